# rftkit developer commands. `make quickstart` and `make test` are the two setup
# commands of the README; both create the virtual environment on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.rftkit-installed
# CPU build of PyTorch unless a GPU is present (a plain `torch` requirement would pull CUDA).
TORCH  ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch,torch==2.13.0)
PYTEST_ARGS ?=

.PHONY: setup quickstart test clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH)"
	$(PIP) install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

quickstart: setup
	$(VENV)/bin/rft grade --data examples/grade/rows.jsonl --completions examples/grade/completions.jsonl \
		--graders configs/graders.openai.json --out runs/grade-example.jsonl

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
