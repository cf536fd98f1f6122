# `make demo` and `make test` each build the environment from nothing, then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; set TORCH_SPEC to another pin (e.g. a CUDA build) on a GPU machine.
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= runs/demo
MODEL ?= synthpie-pose
# The demo's faces: the paper preset's first 115 identities, train 0-89, val 90-99 (the default
# tenth of the train side), test 100-114; the shipped model trained on 0-99, so the 15 test
# identities (100-114, 2,100 images) are unseen by it.
DEMO_SYNTH ?= --preset paper --identities 115 --train-identities 100
# axe-core from the npm registry, which the browser test injects into the query page (an ignored folder).
AXE_VERSION ?= 4.14.1
AXE_JS := .cache/axe/node_modules/axe-core/axe.min.js

.PHONY: env demo serve test clean

$(BIN)/rbg: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

env: $(BIN)/rbg

demo: env
	$(BIN)/rbg data synth $(DEMO_SYNTH) --out $(DEMO_DIR)/faces
	$(BIN)/rbg data show $(DEMO_DIR)/faces --out $(DEMO_DIR)/contact_sheet.png
	$(BIN)/rbg index build --model $(MODEL) --data $(DEMO_DIR)/faces --out $(DEMO_DIR)/index --paper
	$(BIN)/rbg query --index $(DEMO_DIR)/index $(DEMO_DIR)/faces:14000 --pose +30 -k 5 --out $(DEMO_DIR)/query.png
	$(BIN)/rbg bench --model $(MODEL) --data $(DEMO_DIR)/faces --index $(DEMO_DIR)/index --out $(DEMO_DIR)/report --queries 1000 --generation-pairs 1000 --paper
	@echo "demo done: $(DEMO_DIR)/report/report.md, $(DEMO_DIR)/contact_sheet.png, $(DEMO_DIR)/query.png"

# The query page and HTTP API over the demo index (built first if missing): http://127.0.0.1:8000/
serve: env
	test -f $(DEMO_DIR)/index/index.json || { $(BIN)/rbg data synth $(DEMO_SYNTH) --out $(DEMO_DIR)/faces && \
		$(BIN)/rbg index build --model $(MODEL) --data $(DEMO_DIR)/faces --out $(DEMO_DIR)/index --paper; }
	$(BIN)/rbg serve --index $(DEMO_DIR)/index --threads 2

$(AXE_JS):
	npm install --prefix .cache/axe --no-save --no-audit --no-fund axe-core@$(AXE_VERSION)
	test -f $@

test: env $(AXE_JS)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .cache/axe
