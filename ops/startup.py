"""The start-up summary: where chat2api listens and what is on (ops/logs.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ops.logs import summary

log = logging.getLogger("chat2api")


def _listeners() -> list[str]:
    """mitmproxy's listeners as "what at address", best effort."""
    try:
        from mitmproxy import ctx

        out = []
        proxyserver: Any = ctx.master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
        for server in proxyserver.servers:
            mode = server.mode
            kind = "HTTPS proxy" if mode.type_name == "regular" else "reverse (API)"
            addrs = ", ".join(f"{a[0]}:{a[1]}" for a in server.listen_addrs) or mode.full_spec
            out.append(f"{kind} at {addrs}")
        return out
    except Exception:  # noqa: BLE001 - outside mitmdump (tests) or an older API
        return []


def _ca_path() -> str:
    try:
        from mitmproxy import ctx

        return str(Path(ctx.options.confdir).expanduser() / "mitmproxy-ca-cert.pem")
    except Exception:  # noqa: BLE001
        return "(unknown)"


async def log_summary(runtime: Any) -> None:
    try:
        size: int | None = len(await runtime.accounts.store.tokens())
    except Exception:  # noqa: BLE001 - the store logged why
        size = None
    lines = summary(runtime.settings, listeners=_listeners(), ca_path=_ca_path(), pool_size=size)
    log.info("\n".join(lines))
