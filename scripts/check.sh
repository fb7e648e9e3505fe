#!/usr/bin/env bash
# The whole check, as CI runs it: format, lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
export CHAT2API_CLIENT_PYTHON="$(pwd)/.venv-clients/bin/python"
bash scripts/system-deps.sh
echo "== format"; .venv/bin/ruff format --check .
echo "== lint";   .venv/bin/ruff check .
echo "== types";  .venv/bin/mypy .
echo "== tests";  .venv/bin/python -m pytest -q "$@"
