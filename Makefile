# The two commands of the README. Both install what they need first (scripts/bootstrap.sh).
.PHONY: book test bootstrap

bootstrap:
	@bash scripts/bootstrap.sh

book: bootstrap
	.venv/bin/kr book $(BOOK_ARGS)

test: bootstrap
	.venv/bin/python -m pytest $(PYTEST_ARGS)
