# Two commands do all set-up on a fresh machine:
#   make demo   creates .venv, installs rnnviz, and runs the main job on the bundled sample model
#   make test   installs what the tests need (system Chromium included) and runs them
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   := ../shared/data
WP     := sample_models/war-and-peace-lstm-2x256
LINUX  := sample_models/linux-lstm-2x256
MINGRU := sample_models/war-and-peace-mingru-3x160
# The first 100,000 characters of each test split (the last 5% of the file): text the models never saw.
WP_TEST    := --split test --length 100000
LINUX_TEST := --split test --length 100000
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
	# xLSTM's reference sLSTM step, the tests' oracle for ours; its other dependencies (CUDA kernels) are not needed
	$(BIN)/pip install -q --no-deps xlstm==2.0.6
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium chromium-driver; }
	@touch $@

demo: $(VENV)/.installed
	@echo "== War and Peace ($(WP)): a sample, then its cells over unseen text"
	$(BIN)/rnnviz sample $(WP) --prime "\"Well, Prince," --length 240 --temperature 0.8 --seed 1
	$(BIN)/rnnviz record $(WP) $(DATA)/war_and_peace.txt --out stores/wp $(WP_TEST) --force
	$(BIN)/rnnviz find stores/wp --feature in_quote --feature column --top 3
	$(BIN)/rnnviz export stores/wp --feature in_quote --top 3 --out stores/wp_quote_cells.html --length 20000
	$(BIN)/rnnviz export stores/wp --feature column --top 3 --out stores/wp_line_length_cells.html --length 20000
	@echo "== Linux ($(LINUX)): its if / brace / comment cells over unseen kernel C"
	$(BIN)/rnnviz record $(LINUX) $(DATA)/linux_kernel.txt --out stores/linux $(LINUX_TEST) --force
	$(BIN)/rnnviz find stores/linux --feature in_if --feature brace_depth --feature in_comment --top 3
	$(BIN)/rnnviz export stores/linux --feature in_if --top 3 --out stores/linux_if_cells.html --length 20000
	$(BIN)/rnnviz export stores/linux --feature in_comment --top 3 --out stores/linux_comment_cells.html --length 20000
	@echo "== The quote cell in a 2024 recurrent model ($(MINGRU), a minGRU): same text, same search"
	$(BIN)/rnnviz record $(MINGRU) $(DATA)/war_and_peace.txt --out stores/wp-mingru $(WP_TEST) --force
	$(BIN)/rnnviz find stores/wp-mingru --feature in_quote --feature column --top 3
	$(BIN)/rnnviz export stores/wp-mingru --feature in_quote --top 3 --out stores/wp_mingru_quote_cells.html --length 20000
	@echo "== open stores/*_cells.html, or explore all three in the dashboard (Ctrl-C to stop):"
	$(BIN)/rnnviz serve stores/wp stores/wp-mingru stores/linux --feature in_quote

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
