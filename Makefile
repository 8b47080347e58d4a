# The README's two commands: `make run` (the main job) and `make test`. Both set everything up from a
# fresh clone (virtualenv, package and extras) and are quick the second time.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export OCRTUNE_STACK_DIR ?= $(CURDIR)/.ocrtune

.PHONY: setup fonts trdg run test test-unit bench lint clean stack-down

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e ".[pipeline,stack,test,lint]"
	touch $(STAMP)

setup: $(STAMP)

## fonts: handwriting fonts from Debian/npm into ~/.cache/ocrtune/fonts (instant and offline once cached)
fonts: setup
	$(BIN)/ocrtune fonts fetch

## trdg: the real trdg 1.8.0 in its own venv (~/.cache/ocrtune/trdg-venv; ~1 min once) for --backend trdg,
## its test and the benchmark; a failure here only makes that test skip with the reason
trdg: setup
	-$(BIN)/python -c "from ocrtune.data.trdg_backend import ensure_trdg; ensure_trdg()"

CONFIG ?= tiny

## run: the main job: the local stack (SeaweedFS S3 + MLflow) up, then the Kubeflow pipeline itself
## (pipelines/finetune.py: data -> LMDB -> training -> export -> evaluate -> register -> promote) through
## kfp.local on this machine, with the $(CONFIG) profile's parameters
run: setup fonts
	$(BIN)/ocrtune stack up
	$(BIN)/ocrtune pipeline run --local --profile $(CONFIG)
	$(BIN)/ocrtune stack status

## test: the whole test suite: tests/unit (fast, no servers) and tests/integration (real S3 + MLflow servers,
## torchrun ranks, the whole pipeline), servers started and stopped by the tests themselves
test: setup fonts trdg
	$(BIN)/python -m pytest -q --durations=8 tests

## test-unit: the fast part alone (no servers, no torchrun), a couple of minutes
test-unit: setup fonts
	$(BIN)/python -m pytest -q --durations=5 tests/unit

## bench: every bench/bench_*.py, each printing its figures and the machine it ran on
bench: setup fonts trdg
	@set -e; for f in $(wildcard bench/bench_*.py); do echo "== $$f"; $(BIN)/python $$f; done

lint: setup
	$(BIN)/ruff check ocrtune components pipelines tests bench
	$(BIN)/ruff format --check ocrtune components pipelines tests bench

stack-down: setup
	$(BIN)/ocrtune stack down

clean:
	-test -x $(BIN)/ocrtune && $(BIN)/ocrtune stack down
	rm -rf $(VENV) .ocrtune runs .pytest_cache .ruff_cache *.egg-info
