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

.PHONY: gate test test-fast dataset install bytecode clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[ptycho,dev]'
	touch $(STAMP)

install: $(STAMP) bytecode

# pip byte-compiles the packages it installs, but not an editable install, and
# PYTHONDONTWRITEBYTECODE (above) stops Python doing it on import: without this every harness
# command would compile its modules again (about half a CPU-second per `harness run`).
# compileall rewrites only what changed since, so this is cheap to repeat.
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q harness ptycho ptycho_torch

dataset: $(STAMP)
	$(BIN)/ptycho-simulate --canonical

gate: dataset bytecode
	$(BIN)/harness run --cadence pr

test: $(STAMP) bytecode
	$(BIN)/python -m pytest -q

test-fast: $(STAMP) bytecode
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) datasets build *.egg-info
