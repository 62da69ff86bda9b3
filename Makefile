# falign — run `make` (or `make help`) for the targets and variables.
# Every target that needs Python creates .venv first when it is missing or older than pyproject.toml.

PAPER     ?= all
SCALE     ?= small
DATA      ?= synthetic
DATA_ROOT ?= $(FALIGN_DATA)
DEVICE    ?= $(if $(filter gpu,$(SCALE)),cuda,cpu)
SEED      ?= 0

PYTHON    ?= $(shell command -v python3.11 || command -v python3)
VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
CHAPTERS  := $(patsubst notebooks/%/,%,$(wildcard notebooks/*/))
SCALES    := smoke small gpu full
DATASETS  := synthetic 300w aflw-pifa afw lfpw5 helen cofw menpo
NBVAL_DIR := build/nbval

.DEFAULT_GOAL := help
.PHONY: help reproduce book test unit nbval lab bench device-check clean

help:  ## list targets and variables
	@echo "falign — face alignment, reproduced"
	@echo ""
	@echo "Targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 22
	@echo ""
	@echo "Variables (reproduce):"
	@echo "  PAPER=$(PAPER)      one of: $(CHAPTERS) all"
	@echo "  SCALE=$(SCALE)    smoke (CI, seconds) | small (2 CPU cores, minutes) | gpu (one GPU, DEVICE=cuda) | full (paper protocol)"
	@echo "  DATA=$(DATA)  $(DATASETS)"
	@echo "  DATA_ROOT=...     root of real datasets (or env FALIGN_DATA); see the book's 'Reproduce on real data'"
	@echo "  DEVICE=$(DEVICE)       cpu | cuda"
	@echo "  SEED=$(SEED)"

# Validation happens while make reads this file, before anything runs (no venv, no notebooks):
# a bad value stops make with one line naming the valid values.
ifneq ($(filter reproduce,$(MAKECMDGOALS)),)
  ifeq ($(filter $(PAPER),$(CHAPTERS) all),)
    $(error unknown PAPER=$(PAPER); valid: $(CHAPTERS) all)
  endif
  ifeq ($(filter $(SCALE),$(SCALES)),)
    $(error unknown SCALE=$(SCALE); valid: $(SCALES))
  endif
  ifeq ($(filter $(DATA),$(DATASETS)),)
    $(error unknown DATA=$(DATA); valid: $(DATASETS))
  endif
  ifeq ($(filter $(DEVICE),cpu cuda),)
    $(error unknown DEVICE=$(DEVICE); valid: cpu cuda)
  endif
  ifeq ($(SCALE)-$(DEVICE),gpu-cpu)
    $(error SCALE=gpu is sized for one GPU; run it with DEVICE=cuda)
  endif
  ifneq ($(shell printf '%s' '$(SEED)' | grep -Eqx '[0-9]{1,10}' && [ '$(SEED)' -le 4294967295 ] && echo ok),ok)
    $(error SEED=$(SEED) must be a non-negative integer (0 to 4294967295))
  endif
endif

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 is required (python3.11 or python3 on PATH)"; exit 1; }
	@echo "Creating $(VENV) with $(PYTHON) (pinned dependencies and the book and test extras; a few minutes the first time)"
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[book,test]"
	$(PY) -m ipykernel install --sys-prefix --name falign --display-name "falign (.venv)" >/dev/null
	touch $(STAMP)

reproduce: $(STAMP)  ## run chapters: train, evaluate, write results/ and book/
	$(PY) -m falign.kit.pipeline reproduce --paper $(PAPER) --scale $(SCALE) --data $(DATA) \
		--data-root "$(DATA_ROOT)" --device $(DEVICE) --seed $(SEED)

book: $(STAMP)  ## build the HTML book from the executed notebooks (warnings are errors)
	$(PY) -m falign.kit.pipeline toc >/dev/null
	$(VENV)/bin/jupyter-book build book --warningiserror --keep-going --quiet
	@echo "Open book/_build/html/index.html"

test: $(STAMP)  ## unit tests, every notebook at SCALE=smoke through nbval, then the book
	$(MAKE) --no-print-directory unit nbval book

unit: $(STAMP)
	$(PY) -m pytest tests -n 2

nbval: $(STAMP)
	$(PY) -m falign.kit.pipeline nbval-prepare --out $(NBVAL_DIR)
	FALIGN_RESULTS=$(CURDIR)/$(NBVAL_DIR)/_results_nbval FALIGN_WORK=$(CURDIR)/$(NBVAL_DIR)/_work_nbval \
		$(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider $(NBVAL_DIR)

lab: $(STAMP)  ## JupyterLab with jupytext pairing (edit notebooks/*/*.py as notebooks)
	$(PY) -m falign.tools.lab

bench: $(STAMP)  ## benchmarks -> results/bench.csv (CPU, and GPU when present)
	$(PY) -m falign.tools.bench

device-check: $(STAMP)  ## one GPU check in <= 10 min: every chapter's SCALE=gpu training + notebooks on cuda, to OUT=dir
	@test -n "$(OUT)" || { echo "device-check needs OUT=<folder> for its results and timings"; exit 2; }
	$(PY) -m falign.tools.devicecheck --out "$(OUT)" --device $(if $(filter command line,$(origin DEVICE)),$(DEVICE),cuda) \
		--scale $(if $(filter command line,$(origin SCALE)),$(SCALE),gpu)

clean:  ## remove the venv, caches, staged runs and the built book (results/ are kept)
	rm -rf $(VENV) .cache build book/_build .pytest_cache
