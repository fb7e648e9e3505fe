#!/usr/bin/env bash
# The whole check, as CI runs it: format, lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
export CHAT2API_CLIENT_PYTHON="$(pwd)/.venv-clients/bin/python"
bash scripts/system-deps.sh
# Codex CLI (npm, pinned) for tests/test_e2e_codex_cli.py, in .cache/codex-cli.
sh scripts/codex-cli.sh >/dev/null
echo "== format"; .venv/bin/ruff format --check .
echo "== lint";   .venv/bin/ruff check .
echo "== types";  .venv/bin/mypy .
echo "== tests";  .venv/bin/python -m pytest -q "$@"
