# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch 2.13.0 is the CPU wheel where one is provided locally; any torch >= 2.4 works.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test venv dev system-deps-data system-deps-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)" || $(BIN)/pip install -q "torch>=2.4"
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(BIN)/pip install -q -e ".[dev,viz]"
	touch $@

venv: $(VENV)/.core
dev: $(VENV)/.dev

system-deps-data:
	scripts/install-system-deps.sh data

system-deps-test:
	scripts/install-system-deps.sh test
	$(BIN)/axcnn circuit setup --quiet || true

demo: $(VENV)/.core system-deps-data
	$(BIN)/axcnn demo

test: $(VENV)/.dev system-deps-test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
