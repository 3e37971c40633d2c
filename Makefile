# The two commands of the README. Both install what they need first (scripts/bootstrap.sh).
.PHONY: book test test-one-thread bootstrap pdf
PDF_PRESET ?= default

bootstrap:
	@bash scripts/bootstrap.sh

book: bootstrap
	.venv/bin/kr book $(BOOK_ARGS)

# The book as a PDF (_build/latex/kr-book.pdf): the HTML build above, then XeLaTeX from the same executed
# pages. Needs Debian's TeX Live, which bootstrap does not install (README, "A PDF of the book").
pdf: bootstrap
	.venv/bin/python -c 'import sys; from kr_lib.book import build_pdf; print("kr book: the PDF is", build_pdf(preset=sys.argv[1]))' $(PDF_PRESET)

test: bootstrap
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# The suite again on one torch thread (the book's sweeps run with --threads 1; native kernels differ by
# thread count), without the book build, which the first pass covers.
test-one-thread: bootstrap
	OMP_NUM_THREADS=1 .venv/bin/python -m pytest -m "not book" $(PYTEST_ARGS)
