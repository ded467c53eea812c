# Two entry points that work on a fresh machine: `make test` and `make book`.
# Both create .venv when it is missing and install the pinned set-up once.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.augmax-installed
PROFILE ?= quick
PYTEST_ARGS ?=

.PHONY: setup test test-fast book notebooks bench clean-book

setup: $(STAMP)

# Reinstall only when the lock or the package metadata changed.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.lock
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

notebooks: $(STAMP)
	$(PY) book/run_notebooks.py --profile $(PROFILE) --out _build/executed

book: notebooks
	$(VENV)/bin/jupyter-book build . --path-output _build/book
	@echo "Book: _build/book/_build/html/index.html"

bench: $(STAMP)
	$(PY) bench/augment.py

clean-book:
	rm -rf _build
