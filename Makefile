# Tradeflow: `make run` starts the whole platform on its embedded default; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test install clean-var

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Migrates var/tradeflow.db, loads the demo data once, starts (or reuses) Temporal, the worker and the API.
# Ctrl-C stops everything it started; data and history stay in var/ for the next run (clean-var wipes them).
run: $(STAMP)
	@# The workflow sandbox re-imports workflow modules per run; compiled files spare it compiling them each time.
	$(PY) -m compileall -q activities api config.py models workflows worker.py scripts
	$(PY) -m scripts.run

# The browser tests run in their own pytest processes: the sync Playwright session of the browse test keeps an
# event loop running in the main thread, which the async inbox browser test cannot share.
test: $(STAMP)
	$(PY) -m pytest -q -rs --ignore=tests/e2e
	$(PY) -m pytest -q -rs tests/e2e/test_browse_browser.py
	$(PY) -m pytest -q -rs tests/e2e/test_inbox_browser.py
	$(PY) -m pytest -q -rs tests/e2e/test_orders_browser.py
	$(PY) -m pytest -q -rs tests/e2e/test_portal_browser.py

clean-var:
	rm -rf var/*.db var/*.db-* var/temporal*
