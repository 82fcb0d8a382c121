#!/usr/bin/env bash
# Run the whole suite as production runs: gevent patches everything before pytest imports.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m gevent.monkey --module pytest "$@"
