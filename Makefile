# chatapp: `make run` serves the app, `make test` runs every test, `make dist` builds the wheel.
# Each target installs what it needs first; stamps keep repeat runs fast.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENDOR := chatapp/static/vendor
DIST ?= dist
HOST ?= 127.0.0.1
PORT ?= 8000
export HOST PORT

.PHONY: run test test-fast install install-test browser nginx migrate dist clean bench bench-render

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

# The bench's FastAPI relay (bench/fastapi_relay.py) needs FastAPI and uvicorn.
$(VENV)/.installed-bench: $(VENV)/.installed setup.cfg
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@

# htmx and its SSE extension from the tarballs package-lock.json pins, their sha512 checked.
$(VENDOR)/.installed: package.json package-lock.json scripts/vendor.py
	$(PYTHON) scripts/vendor.py $(VENDOR)
	touch $@

# A wheel that servers install without Node: dist/chatapp-VERSION-py3-none-any.whl. It holds
# the templates, static files (htmx checked against the lockfile again, now) and migrations.
dist: install
	$(PYTHON) scripts/vendor.py $(VENDOR)
	rm -rf build $(DIST)/chatapp-*.whl
	$(BIN)/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir $(DIST) .
	@ls $(DIST)/chatapp-*.whl

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

# Streaming budgets of DESIGN.md (bench/run.py): ~6 min; BENCH_ARGS=--quick for a short run.
# The redis2 runs need a Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/0).
bench: install $(VENV)/.installed-bench
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Markdown rendering linear in answer length (bench/render.py): ~2 min.
bench-render: install
	$(BIN)/python bench/render.py $(BENCH_ARGS)

migrate: install
	$(BIN)/flask --app wsgi db upgrade

clean:
	rm -rf $(VENV) node_modules $(VENDOR) *.egg-info build $(DIST)
