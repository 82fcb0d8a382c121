#!/usr/bin/env bash
# Style and types: ruff (lint and format) over the code and tests, mypy over the app.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check chatapp tests bench scripts setup.py wsgi.py gunicorn.conf.py
.venv/bin/ruff format --check chatapp tests bench scripts setup.py wsgi.py gunicorn.conf.py
.venv/bin/mypy chatapp scripts
