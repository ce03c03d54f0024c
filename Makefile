# Two entry points do all set-up on a fresh machine (see README):
#   make gate   - the per-PR gate on the bundled, generated canonical dataset
#   make test   - the whole test suite
# Each creates .venv and installs the pinned dependencies on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: gate test test-fast dataset install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

dataset: $(STAMP)
	$(BIN)/ptycho-simulate --canonical

gate: dataset
	$(BIN)/harness run --cadence pr

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) datasets build *.egg-info
