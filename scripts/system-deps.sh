#!/usr/bin/env bash
# System packages the test suite needs, installed when missing (Debian).
set -euo pipefail
need=()
command -v curl >/dev/null || need+=(curl)
# Headless browser for the page tests (the mirror's and the token page's), driven
# by Selenium through Debian's own chromedriver (tests/support/browser.py).
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
# The Redis server the shared-state tests start on a free port (tests/support/redis.py).
command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || need+=(redis-server)
# npm fetches Codex CLI for its end-to-end test (scripts/codex-cli.sh).
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "chat2api: installing ${need[*]}" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
fi
