# chatapp: `make run` serves the app, `make test` runs every test.
# Each target installs what it needs first; stamps keep repeat runs fast.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENDOR := chatapp/static/vendor
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

.PHONY: run test test-fast install install-test browser nginx migrate clean bench bench-render

run: install migrate
	$(BIN)/gunicorn --config gunicorn.conf.py wsgi:app

test: install-test browser nginx
	bash tests/lint.sh
	bash tests/run.sh
	bash tests/postgres.sh

# The quick loop while working: lint, then everything but the slow tests, on SQLite.
test-fast: install-test
	bash tests/lint.sh
	bash tests/run.sh -q -m "not slow"

install: $(VENV)/.installed $(VENDOR)/.installed

install-test: install $(VENV)/.installed-test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

$(VENV)/.installed: $(VENV)/bin/python setup.cfg setup.py
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed setup.cfg
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(VENDOR)/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/htmx.min.js
	cp node_modules/htmx-ext-sse/dist/sse.min.js $(VENDOR)/sse.min.js
	touch $@

# Debian's Chromium for the browser tests (Playwright cannot download its own here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Debian's nginx for the test of deploy/nginx/chatapp.conf (tests/test_nginx.py). The test runs
# its own nginx on free ports; nothing here configures or starts the system's.
nginx:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
	  echo "Installing nginx for the nginx sample's test"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nginx >/dev/null; }

# Streaming budgets of DESIGN.md (bench/run.py): ~15 min; BENCH_ARGS=--quick for a short run.
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Markdown rendering linear in answer length (bench/render.py): ~2 min.
bench-render: install
	$(BIN)/python bench/render.py $(BENCH_ARGS)

migrate: install
	$(BIN)/flask --app wsgi db upgrade

clean:
	rm -rf $(VENV) node_modules $(VENDOR) *.egg-info
