# make train: create .venv, install, and train the image captioner on the built-in data.
# make test:  create .venv if needed, install, and run the whole test suite (what CI runs).
# make test-fast: the same without the end-to-end runs marked slow (a developer's quick check).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# the exact versions: pyproject.toml has ranges, constraints.txt the tested pins
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
# one worker per core; a test module stays on one worker (its shared fixtures are made once)
PYTEST := $(BIN)/python -m pytest -q --durations=15 -n auto --dist loadfile

.PHONY: venv train test test-fast clean

# editable_mode=compat: the repo folder on sys.path, so that Hydra finds the zoo's sweeper in the
# hydra_plugins namespace from any folder (setuptools' default editable finder hides it)
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "setuptools>=68" wheel
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]" --config-settings editable_mode=compat
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

train: $(STAMP)
	$(BIN)/python -m zoo task=captioning

test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
