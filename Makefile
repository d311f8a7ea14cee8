# Two commands do all set-up on a fresh machine:
#   make demo   creates .venv, installs rnnviz, and runs the main job on the bundled sample model
#   make test   installs what the tests need (system Chromium included) and runs them
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
MODEL  := sample_models/shakespeare-lstm-2x128
CORPUS := ../shared/data/tiny_shakespeare.txt
# The CPU build of torch lies on this kind of machine's disk; a bare `torch` would pull a multi-GB CUDA build.
TORCH_CPU  := torch==2.13.0+cpu
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	@if $(PYTHON) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then \
	    echo "== using the CUDA torch already installed"; $(PYTHON) -m venv --system-site-packages $(VENV); \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	    $(PYTHON) -m venv $(VENV) && $(BIN)/pip install -q torch; \
	else \
	    $(PYTHON) -m venv $(VENV) && $(BIN)/pip install -q $(FIND_LINKS) "$(TORCH_CPU)"; \
	fi
	$(BIN)/pip install -q $(FIND_LINKS) -e .
	@touch $@

$(VENV)/.test-installed: $(VENV)/.installed
	$(BIN)/pip install -q $(FIND_LINKS) -e '.[test]'
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium chromium-driver; }
	@touch $@

demo: $(VENV)/.installed
	@echo "== a sample from the bundled model ($(MODEL))"
	$(BIN)/rnnviz sample $(MODEL) --prime "ROMEO:" --length 300 --temperature 0.8 --seed 1
	@echo "== its loss on the test split (nats/char)"
	$(BIN)/rnnviz eval $(MODEL) $(CORPUS) --split test
	@echo "== record every cell over the test split"
	$(BIN)/rnnviz record $(MODEL) $(CORPUS) --out stores/demo --start 1059624 --kinds h,c,i,f,g,o --force
	@echo "== the cells that best track each hypothesis"
	$(BIN)/rnnviz find stores/demo --top 3
	$(BIN)/rnnviz export stores/demo --feature column --top 3 --out stores/demo_column_cells.html --length 20000
	@echo "== open stores/demo_column_cells.html (the line-length cells), or explore in the dashboard (Ctrl-C to stop):"
	$(BIN)/rnnviz serve stores/demo

test: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --timeout 900

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .

bench: $(VENV)/.installed
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/record_throughput.py

clean:
	rm -rf $(VENV) stores runs test-artifacts .pytest_cache .ruff_cache
