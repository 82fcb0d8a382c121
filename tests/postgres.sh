#!/usr/bin/env bash
# The whole suite again, on PostgreSQL (TEST_DATABASE_URL; default: the local `test` database).
# The tests drop and recreate its `public` schema: point it at a throwaway database.
set -euo pipefail
cd "$(dirname "$0")/.."
url="${TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}"
if ! .venv/bin/python -c 'import sys, psycopg; psycopg.connect(sys.argv[1], connect_timeout=5).close()' "$url" 2>/dev/null; then
  if [ "${CI:-}" = "true" ]; then
    echo "PostgreSQL does not answer at $url; CI must run the PostgreSQL pass." >&2
    exit 1
  fi
  echo "Skipping the PostgreSQL pass: nothing answers at $url (set TEST_DATABASE_URL)." >&2
  exit 0
fi
echo "PostgreSQL pass: $url"
DATABASE_URL="$url" exec bash tests/run.sh "$@"
