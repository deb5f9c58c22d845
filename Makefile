# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install browser demo test lint bench fixtures clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m identity_analytics.demo

lint: install
	$(PY) -m ruff check identity_analytics tests bench data notebooks
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

# The HTML report is checked in a real headless Chromium (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: install it (e.g. apt-get install chromium) for the browser test"; fi; }

test: install lint browser
	$(PY) -m pytest

bench: install
	$(PY) bench/ingest.py
	$(PY) bench/cohorts.py
	$(PY) bench/suppression.py
	$(PY) bench/http.py
	$(PY) bench/report_1m.py
	$(PY) bench/release.py

fixtures: install
	$(PY) data/fixtures/make_fixtures.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
