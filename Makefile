# `make demo` and `make test` each build the environment from nothing, then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; set TORCH_SPEC to another pin (e.g. a CUDA build) on a GPU machine.
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= runs/demo

.PHONY: env demo test clean

$(BIN)/rbg: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

env: $(BIN)/rbg

demo: env
	$(BIN)/rbg data synth --preset small --out $(DEMO_DIR)/synthpie-small
	$(BIN)/rbg data show $(DEMO_DIR)/synthpie-small --out $(DEMO_DIR)/synthpie-small.png

test: env
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
