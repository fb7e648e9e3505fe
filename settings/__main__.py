"""`python -m settings`: the resolved listener settings as shell assignments.

run.sh evaluates this to build mitmdump's command line; a bad setting prints a
message naming it and exits with status 2.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from settings import SettingsError, load_settings


def main() -> int:
    path = os.environ.get("CHAT2API_CONFIG") or str(
        Path(__file__).resolve().parent.parent / "config.yaml"
    )
    try:
        s = load_settings(path, os.environ)
    except SettingsError as e:
        print(f"chat2api: {e}", file=sys.stderr)
        return 2
    values = {
        "C2A_HOST": s.host,
        "C2A_PROXY_PORT": str(s.proxy_port),
        "C2A_PORT": str(s.port),
        "C2A_CONFDIR": os.path.expanduser(s.confdir),
        "C2A_GATEWAY": "1" if s.enable_gateway else "",
        "C2A_UPSTREAM": s.chatgpt_base_url[0],
        "C2A_API_ROOT": s.api_root,
    }
    for key, value in values.items():
        print(f"{key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
