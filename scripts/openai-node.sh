#!/bin/sh
# Installs openai-node (npm openai, pinned) and undici (its proxy agent, for the HTTPS-proxy
# set-up) into .cache/openai-node for the end-to-end tests (tests/test_e2e_node.py), once;
# prints the node_modules directory.
set -eu
VERSION="${OPENAI_NODE_VERSION:-7.55.0}"
UNDICI="${UNDICI_VERSION:-6.21.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="$ROOT/.cache/openai-node/$VERSION"
if [ ! -f "$DIR/node_modules/openai/package.json" ] || [ ! -f "$DIR/node_modules/undici/package.json" ]; then
    command -v npm >/dev/null 2>&1 || { echo "npm is needed to install openai-node" >&2; exit 1; }
    mkdir -p "$DIR"
    npm install --silent --no-audit --no-fund --prefix "$DIR" "openai@$VERSION" "undici@$UNDICI" >&2
fi
echo "$DIR/node_modules"
