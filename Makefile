# sealfn — every target sets up what it needs; a fresh machine needs only Python 3.11 and make.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SOAK_MINUTES ?= 10
# (not $(or ...): make would split the list at its commas)
SOAK_MIX ?= plain,sealed,he,batch
STAMP := $(VENV)/.installed

.PHONY: all venv demo test test-slow test-ray test-all fuzz soak check bench clean

all: check test

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[models,dev,he]'
	touch $(STAMP)

demo: venv  ## build example models, serve, deploy, exercise cold/warm/batching/scale-to-zero
	$(BIN)/sealfn demo

test: venv  ## the default suite (slow end-to-end runs excluded: make test-slow)
	$(BIN)/python -m pytest -m "not slow and not ray"

test-slow: venv
	$(BIN)/python -m pytest -m "slow and not ray"

test-ray: venv  ## the Ray engine against a local Ray cluster (installs the optional extra)
	$(BIN)/python -m pip install -q -e '.[models,dev,he,ray]'
	$(BIN)/python -m pytest -m ray

test-all: venv
	$(BIN)/python -m pytest

fuzz: venv  ## coverage-guided fuzzing of every parser (atheris), FUZZ_SECONDS per target
	$(BIN)/python -m pip install -q -e '.[models,dev,he,fuzz]'
	cd fuzz && ../$(BIN)/python run.py --seconds $(or $(FUZZ_SECONDS),60)

soak: venv  ## plain + sealed at saturation, HE + batch beside, SOAK_MINUTES (10); SOAK_MIX picks
	cd benchmarks && ../$(BIN)/python soak.py --minutes $(SOAK_MINUTES) --mix $(SOAK_MIX)

check: venv  ## format, lint, types
	$(BIN)/ruff format --check src tests benchmarks fuzz
	$(BIN)/ruff check src tests benchmarks fuzz
	$(BIN)/mypy --strict src

bench: venv  ## side-by-side serving benchmark (Ray Serve in its own venv): JSON + PNG in benchmarks/results
	$(BIN)/python benchmarks/serving.py

clean:
	rm -rf $(VENV) .venv-bench .sealfn .sealfn-demo .mypy_cache .ruff_cache .pytest_cache
