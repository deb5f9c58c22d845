# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint bench fixtures clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m identity_analytics.demo

lint: install
	$(PY) -m ruff check identity_analytics tests bench data
	$(PY) -m mypy

test: install lint
	$(PY) -m pytest

bench: install
	$(PY) bench/ingest.py
	$(PY) bench/suppression.py

fixtures: install
	$(PY) data/fixtures/make_fixtures.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
