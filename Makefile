# Quick start: `make train` sets up and trains the seed CNN on CIFAR-10; `make test` sets up
# and runs the tests (the fast subset; `make test-all` runs every test); `make docs` builds
# the documentation site into site/. All create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The local CIFAR-10 copy used here (no internet); on a networked machine use DATA=cifar10
# to download the official release instead.
DATA ?= ../shared/datasets/cifar10-jpeg.zip
TRAIN_ARGS ?=
# Wraps train-fast to report wall time and peak memory (GNU time; TIME= to go without).
TIME ?= /usr/bin/time -v

.PHONY: setup train train-fast test test-all lint docs docs-executed gradcheck bench clean

setup: $(VENV)/.installed

# torch is pinned exactly: any looser requirement pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e ".[test,docs,fast,datasets,viz,tensorboard,onnx,sweep,baselines]" "torch==2.13.0"
	touch $@

train: setup
	$(BIN)/scratchcnn train --data $(DATA) $(TRAIN_ARGS)

# The airbench93-style recipe on all 50,000 training images, tested once with TTA at the end
# (about 30+ minutes on 2 cores); $(TIME) reports the wall time and peak memory.
train-fast: setup
	$(TIME) $(BIN)/scratchcnn train --recipe fast --data $(DATA) $(TRAIN_ARGS)

# The fast subset (what CI runs, about 5 minutes on 2 cores); test-all adds the tests marked
# slow: loading all of real CIFAR-10 and training on it, the long sweep tests, the deeper
# ResNets' gradient checks and the two-process DDP example.
test: setup
	$(BIN)/python -m pytest -q -m "not slow"

test-all: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff format --check src tests benchmarks scripts examples notebooks
	$(BIN)/ruff check src tests benchmarks scripts examples notebooks

# The site, strict (a broken link or API reference fails); the notebooks are shown as written.
docs: setup
	$(BIN)/mkdocs build --strict

# The same, running every notebook at its full size while building (minutes; needs CIFAR-10).
docs-executed: setup
	SCRATCHCNN_DOCS_EXECUTE=true $(BIN)/mkdocs build --strict

gradcheck: setup
	$(BIN)/scratchcnn gradcheck

bench: setup
	$(BIN)/scratchcnn bench --vs-torch

clean:
	rm -rf $(VENV) .pytest_cache site
