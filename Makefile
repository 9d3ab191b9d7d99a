# `make demo` and `make test` do all set-up on a fresh machine: a local virtualenv with the pinned
# dependencies (torch==2.13.0 is the CPU wheel) and, where possible, bubblewrap for the sandbox.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-real-lm setup bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	bash scripts/install_system_deps.sh
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/projected-grpo demo

test: setup
	$(BIN)/python -m pytest -q

test-real-lm: setup  # the real-LM tests CI leaves out (~15 min): fast-dev-run on SmolLM2-135M from PyPI
	$(BIN)/python -m pytest -q -m real_lm

bench: setup
	$(BIN)/python benchmarks/grade_throughput.py

clean:
	rm -rf $(VENV) runs/demo
