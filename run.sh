#!/usr/bin/env bash
# chat2api launcher.
#   ./run.sh [mitmdump args...]   set up .venv if needed, then start the proxy
#   ./run.sh test                 set up, then format check, lint, types and the test suite;
#                                 then the suite again on Python >= 3.12 with mitmproxy 12
#                                 (.venv-py312) where such a Python exists
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
PY=${PYTHON:-python3}

# Create or refresh a virtual environment from a pinned requirements file;
# reinstalls only when the file changed. A third argument picks the Python.
venv() {
  local dir=$1 req=$2 py=${3:-$PY} stamp
  if [ ! -x "$dir/bin/python" ]; then
    echo "chat2api: creating $dir" >&2
    "$py" -m venv "$dir"
  fi
  stamp=$(sha256sum "$req" | cut -d' ' -f1)
  if [ "$(cat "$dir/.installed" 2>/dev/null)" != "$stamp" ]; then
    echo "chat2api: installing $req into $dir" >&2
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
    "$dir/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
    echo "$stamp" > "$dir/.installed"
  fi
}

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# A real Python >= 3.12 (pyenv's shims refuse to run unless one is selected, so
# each candidate is asked for its version rather than trusted by name).
newer_python() {
  local candidate
  for candidate in python3.12 python3.13 /usr/bin/python3.12 /usr/bin/python3.13 \
      /usr/local/bin/python3.12 /usr/local/bin/python3.13 \
      "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3.1[2-9]; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

if [ "${1:-}" = "test" ]; then
  shift
  venv .venv requirements.txt
  venv .venv-clients requirements-clients.txt
  bash scripts/check.sh "$@"
  if newer=$(newer_python); then
    echo "== tests on $("$newer" --version) with mitmproxy 12 ($newer, .venv-py312)"
    venv .venv-py312 requirements.txt "$newer"
    CHAT2API_VENV=.venv-py312 CHAT2API_TESTS_ONLY=1 bash scripts/check.sh "$@"
  else
    echo "== skipped the run on Python >= 3.12 (mitmproxy 12): no python3.12/3.13 found" \
      "on PATH, in /usr/bin, /usr/local/bin or ~/.pyenv/versions"
  fi
  exit 0
fi

venv .venv requirements.txt
eval "$(.venv/bin/python -m settings)"

if [ -n "$C2A_GATEWAY" ]; then
  reverse_target=$C2A_UPSTREAM
else
  # Every request on the reverse listener is answered by chat2api itself;
  # the target is never contacted.
  reverse_target=http://127.0.0.1:9
fi
scripts=(-s "$ROOT/addons/chat2api.py")
# addons/chat2api.py loads the token admin (addons/admin.py) itself, ahead of its own.
[ -n "$C2A_GATEWAY" ] && [ -f "$ROOT/addons/mirror.py" ] && scripts+=(-s "$ROOT/addons/mirror.py")

ca="$C2A_CONFDIR/mitmproxy-ca-cert.pem"
cat <<INFO
chat2api
  HTTPS proxy:  http://$C2A_HOST:$C2A_PROXY_PORT  (intercepts the hosts in intercept_hosts)
  reverse API:  http://$C2A_HOST:$C2A_PORT$C2A_API_ROOT
  CA cert:      $ca  (created on first start)

Point a client at it, either through the proxy:
  export HTTPS_PROXY=http://$C2A_HOST:$C2A_PROXY_PORT
  export SSL_CERT_FILE=$ca
  (SSL_CERT_FILE replaces the system CAs; for clients that also reach other HTTPS
   hosts, use a bundle: cat /etc/ssl/certs/ca-certificates.crt $ca > bundle.pem)
or through the base URL:
  export OPENAI_BASE_URL=http://$C2A_HOST:$C2A_PORT$C2A_API_ROOT

INFO

# mitmdump itself with only the addons chat2api needs, and its patches
# (patches/launcher.py, README "Patches"); `.venv/bin/mitmdump -s addons/chat2api.py`
# works as well.
exec .venv/bin/python -m patches.launcher \
  --mode "regular@$C2A_HOST:$C2A_PROXY_PORT" \
  --mode "reverse:$reverse_target@$C2A_HOST:$C2A_PORT" \
  --set confdir="$C2A_CONFDIR" \
  --set connection_strategy=lazy \
  "${scripts[@]}" "$@"
