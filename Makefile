# lmmformula: every target creates .venv when it is missing and installs the package into it.
PYTHON ?= $(shell command -v python3.12 || command -v python3.13 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint vignettes vignettes-smoke bench data clean mutants

$(PY):
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 12), "lmmformula needs Python >= 3.12"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev,docs,distributed,jax]"
	touch $(STAMP)

## Fit the correlated ozone model on the shipped Beijing data and print its summary.
demo: $(STAMP)
	$(VENV)/bin/lmmformula demo

## The whole test suite.
test: $(STAMP)
	$(PY) -m pytest

## The tests that do not sample.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not sampling"

## Mutation check: plausible bugs in a copy of the library must fail the tests (tests/tools/mutants.py).
mutants: $(STAMP)
	$(PY) tests/tools/mutants.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## Execute every vignette from scratch and write self-contained HTML to vignettes/_build/.
vignettes: $(STAMP)
	$(PY) vignettes/render.py

vignettes-smoke: $(STAMP)
	LMMFORMULA_SMOKE=1 $(PY) vignettes/render.py --out vignettes/_build/smoke

## Benchmarks: lmmformula side by side with plain Bambi and hand-written PyMC.
bench: $(STAMP)
	$(PY) benchmarks/run.py

## Re-derive data/*.csv from ../shared/data (needs the raw files beside the repo).
data: $(STAMP)
	$(PY) data/scripts/derive.py

clean:
	rm -rf $(VENV) vignettes/_build .pytest_cache
