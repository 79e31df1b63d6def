# Two commands do everything on a fresh machine:
#   make demo   build an index over the default corpus with the bundled SPLADE model, then search it
#   make test   run the linter (make lint), then the whole test suite; CI runs exactly this
# Both create .venv on first use and install what they need (torch==2.13.0 first: a CPU wheel;
# an unpinned torch would download a multi-GB CUDA build).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sparse-ir-installed
TORCH_VERSION ?= 2.13.0

.PHONY: install demo test lint bench-install clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/sparse-ir demo

test: lint
	$(PY) -m pytest -q

bench-install: install
	$(PY) -m pip install --quiet -e '.[all,bench]'

# ruff comes with the dev extra (in .[all]).
lint: install
	$(VENV)/bin/ruff check sparse_ir tests scripts
	$(VENV)/bin/ruff format --check sparse_ir tests scripts

clean-venv:
	rm -rf $(VENV)
