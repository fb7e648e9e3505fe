#!/bin/sh
# Installs Codex CLI (npm @openai/codex, pinned) into .cache/codex-cli for the
# end-to-end tests (tests/test_e2e_codex_cli.py), once; prints the binary's path.
# The package ships its native binary, so only node/npm are needed to fetch it.
set -eu
VERSION="${CODEX_CLI_VERSION:-0.171.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$ROOT/.cache/codex-cli/$VERSION"
BIN="$DIR/node_modules/.bin/codex"
if [ ! -x "$BIN" ]; then
    command -v npm >/dev/null 2>&1 || { echo "npm is needed to install Codex CLI" >&2; exit 1; }
    mkdir -p "$DIR"
    npm install --silent --no-audit --no-fund --prefix "$DIR" "@openai/codex@$VERSION" >&2
fi
echo "$BIN"
