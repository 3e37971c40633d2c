# The two commands of the README. Both install what they need first (scripts/bootstrap.sh).
.PHONY: book test test-one-thread bootstrap

bootstrap:
	@bash scripts/bootstrap.sh

book: bootstrap
	.venv/bin/kr book $(BOOK_ARGS)

test: bootstrap
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# The suite again on one torch thread (the book's sweeps run with --threads 1; native kernels differ by
# thread count), without the book build, which the first pass covers.
test-one-thread: bootstrap
	OMP_NUM_THREADS=1 .venv/bin/python -m pytest -m "not book" $(PYTEST_ARGS)
