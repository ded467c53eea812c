# Two entry points that work on a fresh machine: `make test` and `make book`.
# Both create .venv when it is missing and install the pinned set-up once.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.augmax-installed
PROFILE ?= quick
PYTEST_ARGS ?=

.PHONY: setup test test-fast book book-assets notebooks bench clean-book

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

# The notebooks' executed copies + the vendored scripts -> HTML (warnings are errors), no CDN at page time.
book: notebooks book-assets
	$(PY) book/build_book.py --executed _build/executed --out _build/book

# require.js, the widget manager and MathJax at the versions book/package-lock.json pins (npm registry).
book-assets: $(STAMP)
	$(PY) book/fetch_assets.py

bench: $(STAMP)
	$(PY) bench/augment.py

clean-book:
	rm -rf _build
