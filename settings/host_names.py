"""Host names with an optional port: the syntax of ``gateway_hosts``, also used by the
mirror to read a request's ``Host`` header (mirror/router.py)."""

from __future__ import annotations

import re

_HOST_PARTS = re.compile(r"\[([0-9a-f:.]+)\](?::(\d{1,5}))?|([a-z0-9_.-]+?)\.?(?::(\d{1,5}))?")


def split_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of ``host``, ``host:port``, ``[IPv6]:port`` or a bare IPv6
    address (a trailing dot dropped, lower case); None if malformed."""
    text = value.strip().lower()
    if ":" in text and not text.startswith("[") and text.count(":") > 1:
        text = f"[{text}]"  # a bare IPv6 address
    m = _HOST_PARTS.fullmatch(text)
    if m is None:
        return None
    name = m.group(1) or m.group(3)
    port = m.group(2) or m.group(4)
    if not name or (port is not None and not 0 < int(port) < 65536):
        return None
    return name, int(port) if port else None
