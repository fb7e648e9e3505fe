#!/usr/bin/env bash
# The whole check, as CI runs it: format, lint, types, tests.
#   CHAT2API_VENV=.venv-py312  run the tests with that environment's Python
#   CHAT2API_TESTS_ONLY=1      the tests only (run.sh's second run, on Python >= 3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
export CHAT2API_CLIENT_PYTHON="$(pwd)/.venv-clients/bin/python"
VENV=${CHAT2API_VENV:-.venv}
bash scripts/system-deps.sh
# Codex CLI (npm, pinned) for tests/test_e2e_codex_cli.py, in .cache/codex-cli.
sh scripts/codex-cli.sh >/dev/null
if [ -z "${CHAT2API_TESTS_ONLY:-}" ]; then
  echo "== format"; .venv/bin/ruff format --check .
  echo "== lint";   .venv/bin/ruff check .
  echo "== types";  .venv/bin/mypy .
fi
echo "== tests ($("$VENV/bin/python" --version), $("$VENV/bin/python" -c \
  'from mitmproxy.version import VERSION; print("mitmproxy", VERSION)'))"
# Two workers, each taking whole modules (their emulator and mitmdump fixtures are
# per module): most of the time goes to client programs starting up, not to CPU
# both workers need at once.
"$VENV/bin/python" -m pytest -q -n 2 --dist loadfile "$@"
