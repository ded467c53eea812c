# Two entry points that work on a fresh machine: `make test` and `make book`.
# Both create .venv when it is missing and install the pinned set-up once.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.augmax-installed
PROFILE ?= quick
PYTEST_ARGS ?=
# NOTEBOOK_ARGS=--record-times stores each notebook's time in book/notebook_times.json (shown atop each notebook).
NOTEBOOK_ARGS ?=

.PHONY: setup test test-fast book book-assets notebooks bench clean-book

setup: $(STAMP)

# Reinstall only when the lock or the package metadata changed.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.lock
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# ruff (lint and import order, configured in pyproject.toml), then the tests.
test: $(STAMP)
	$(PY) -m ruff check augmax_lib tests book bench notebooks
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

notebooks: $(STAMP)
	$(PY) book/run_notebooks.py --profile $(PROFILE) --out _build/executed $(NOTEBOOK_ARGS)

# The notebooks' executed copies + the vendored scripts -> HTML (warnings are errors), no CDN at page time.
book: notebooks book-assets
	$(PY) book/build_book.py --executed _build/executed --out _build/book

# require.js, the widget manager and MathJax at the versions book/package-lock.json pins (npm registry).
book-assets: $(STAMP)
	$(PY) book/fetch_assets.py

bench: $(STAMP)
	$(PY) bench/augment.py

# The CPU-scale reproduction that ships with the book: RESULTS_SEEDS seeds of each config in RESULTS_CONFIGS at
# the RESULTS_PROFILE profile, trained and evaluated into RESULTS_RUNS (complete runs are skipped, partial ones
# resume), then every run's small JSON files (no checkpoints) copied to RESULTS_OUT with tables.md/tables.csv.
# Needs AUGMAX_DATA (the CIFAR-10 mirror); RA uses corruptions generated on the fly (no CIFAR-10-C here).
RESULTS_CONFIGS ?= configs/cifar10/resnet18_normal.yaml configs/cifar10/resnet18_augmix.yaml \
	configs/cifar10/resnet18_augmax_dubin.yaml
RESULTS_SEEDS ?= 0 1 2
RESULTS_PROFILE ?= quick
RESULTS_RUNS ?= runs/$(RESULTS_PROFILE)
RESULTS_OUT ?= results/$(RESULTS_PROFILE)
RESULTS_PARALLEL ?= 1
# Long runs beside other work: RESULTS_NICE=19 lowers their priority, RESULTS_THREADS=1 leaves a core free
# (two processes that each spin OpenMP threads on 2 cores slow each other down up to tenfold).
RESULTS_NICE ?= 0
RESULTS_THREADS ?=
RESULTS_EVAL_ARGS ?= --generate-corruptions
RESULTS_SWEEP_ARGS ?=
RESULTS_TABLES_ARGS ?=

.PHONY: results shipped-models
results: $(STAMP)
	nice -n $(RESULTS_NICE) $(PY) -m augmax_lib sweep $(RESULTS_CONFIGS) --profile $(RESULTS_PROFILE) \
		--seeds $(RESULTS_SEEDS) --out $(RESULTS_RUNS) --executor local --max-parallel $(RESULTS_PARALLEL) \
		$(if $(RESULTS_THREADS),--threads $(RESULTS_THREADS)) \
		--eval-args="$(RESULTS_EVAL_ARGS)" $(RESULTS_SWEEP_ARGS)
	$(PY) -m augmax_lib tables $(RESULTS_RUNS) --export $(RESULTS_OUT) --quiet $(RESULTS_TABLES_ARGS)

clean-book:
	rm -rf _build

# The long profile's seed-0 runs as the library's shipped models (fp16 safetensors + a hashed manifest).
SHIPPED_RUNS ?= runs/long
shipped-models: $(STAMP)
	$(PY) -m augmax_lib export $(SHIPPED_RUNS) --seed 0 --out augmax_lib/models/weights/long --collection long
