"""What every listener refuses before a request is worked on (``addons/shield.py``).

mitmproxy-free pieces, one per attack the security review made (README
"Security"):

* :func:`header_problem` / :func:`target_problem`: control characters in header
  values (a bare CR or NUL would go upstream as it came) and raw bytes that are
  not ASCII in the request line (a path no decoder agrees on).
* :class:`ProxyCredentials`: ``proxy_auth`` (``user:pass``), compared in constant time.
* :class:`Destinations`: where the HTTPS-proxy listener may connect for a client
  (not loopback, private, link-local or its own listeners; ``proxy_allow_hosts``).
* :class:`ConnectionBook`: connections per client address, and how long each has
  been without a request in progress (the header-read timeout).
* :func:`mask_in_logs`: the secret ``API_PREFIX`` replaced in every log record.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from service.netguard import forbidden_address, host_listed, is_local, resolve

# C0 controls but horizontal tab, and DEL: never part of a header value (RFC 9110 §5.5).
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# The request target is ASCII without controls or spaces (RFC 9112 §3.2).
_BAD_TARGET = re.compile(rb"[^\x21-\x7e]")


def header_problem(fields: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why the header fields are refused, or None."""
    for name, value in fields:
        if _CONTROL.search(value) or _CONTROL.search(name):
            shown = name.decode("ascii", "replace")[:40]
            return f"The header {shown!r} contains a control character."
    return None


def target_problem(target: bytes) -> str | None:
    """Why the request target (path and query as sent) is refused, or None."""
    if _BAD_TARGET.search(target):
        return (
            "The request target contains bytes that are not printable ASCII; "
            "percent-encode them."
        )
    return None


class ProxyCredentials:
    """``proxy_auth``: the ``user:pass`` a client must send as Basic proxy credentials."""

    def __init__(self, spec: str) -> None:
        self._expected = spec.encode()

    def valid(self, header: str | None) -> bool:
        scheme, _, encoded = (header or "").strip().partition(" ")
        given = b""
        if scheme.lower() == "basic":
            try:
                given = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                given = b""
        # compare_digest even when the header is missing: no timing hint either way
        return hmac.compare_digest(given, self._expected) and bool(given)


@dataclass(frozen=True)
class Verdict:
    """A proxy destination's check: ``refused`` says why; ``address`` is the one to use."""

    refused: str | None
    address: str | None = None


class Destinations:
    """Where the HTTPS-proxy listener may take a client (see the module docstring)."""

    def __init__(
        self,
        *,
        allow: tuple[str, ...],
        intercept: Iterable[str],
        listener_ports: Callable[[], Iterable[int]],
    ) -> None:
        self.allow = tuple(h.lower() for h in allow)
        self.intercept = frozenset(h.lower() for h in intercept)
        self._ports = listener_ports

    async def check(self, host: str, port: int) -> Verdict:
        name = host.lower().rstrip(".").strip("[]")
        if name in self.intercept:
            return Verdict(None)  # answered by chat2api itself, never dialled
        own = set(self._ports())
        # A listed host:port is allowed as it is; a listed host, on any port but
        # the proxy's own (those must be listed with their port).
        if host_listed(name, port, self.allow, exact=True):
            return Verdict(None)
        name_listed = host_listed(name, port, self.allow)
        if name_listed and port not in own:
            return Verdict(None)
        try:
            found = await resolve(name, port)
        except ValueError as e:
            return Verdict(f"{e}.")
        if not found:
            return Verdict(f"the host {name!r} resolves to nothing.")
        for address in found:
            text = str(address)
            if port in own and is_local(address):
                if host_listed(text, port, self.allow, exact=True):
                    continue
                return Verdict(f"{name}:{port} is this proxy's own listener.")
            if name_listed or host_listed(text, port, self.allow):
                continue
            if forbidden_address(address):
                return Verdict(
                    f"{name} ({address}) is a loopback, private or link-local address; "
                    "list it in proxy_allow_hosts to allow it."
                )
        return Verdict(None, str(found[0]))


@dataclass
class _Conn:
    address: str
    idle_since: float | None
    exempt: bool = False
    flows: list[Any] = field(default_factory=list)


class ConnectionBook:
    """Client connections by id: how many per address, and which have been without
    a request in progress for longer than the header-read timeout.

    A connection is *idle* from its start, and again once every request it carried
    has ended (``live`` false); a request's complete head ends that. Tunnels and
    WebSockets are exempt (their bytes are not HTTP requests).
    """

    def __init__(self, *, per_address: int, header_timeout: float) -> None:
        self.per_address = per_address
        self.header_timeout = header_timeout
        self._conns: dict[str, _Conn] = {}
        self._counts: dict[str, int] = {}

    def opened(self, conn_id: str, address: str) -> bool:
        """Count a new connection; False if its address has too many already."""
        count = self._counts.get(address, 0)
        if count >= self.per_address:
            return False
        self._counts[address] = count + 1
        self._conns[conn_id] = _Conn(address, time.monotonic())
        return True

    def closed(self, conn_id: str) -> None:
        conn = self._conns.pop(conn_id, None)
        if conn is None:
            return
        left = self._counts.get(conn.address, 1) - 1
        if left > 0:
            self._counts[conn.address] = left
        else:
            self._counts.pop(conn.address, None)

    def request(self, conn_id: str, flow: Any) -> None:
        """A request's head is complete."""
        conn = self._conns.get(conn_id)
        if conn is not None:
            conn.idle_since = None
            conn.flows.append(flow)

    def exempt(self, conn_id: str, exempt: bool = True) -> None:
        conn = self._conns.get(conn_id)
        if conn is not None:
            conn.exempt = exempt
            conn.idle_since = None if exempt else time.monotonic()

    def overdue(self) -> list[str]:
        """Connections idle for longer than the header-read timeout."""
        now = time.monotonic()
        out = []
        for conn_id, conn in self._conns.items():
            if conn.exempt:
                continue
            if conn.idle_since is None:
                conn.flows = [f for f in conn.flows if getattr(f, "live", False)]
                if not conn.flows:
                    conn.idle_since = now
                continue
            if now - conn.idle_since > self.header_timeout:
                out.append(conn_id)
        return out

    def __len__(self) -> int:
        return len(self._conns)


_MASKED: dict[str, str] = {}


def mask_in_logs(prefix: str | None) -> None:
    """Replace ``prefix`` (the secret API_PREFIX) by ``<api_prefix>`` in every log
    record from now on, whoever logs it (mitmproxy's own lines included)."""
    _MASKED.clear()
    if prefix and len(prefix) >= 4:  # shorter is no secret, and would garble every line
        _MASKED[prefix] = "<api_prefix>"
    factory = logging.getLogRecordFactory()
    if getattr(factory, "chat2api_masking", False):
        return

    def masking(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if _MASKED:
            try:
                text = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format is the handler's to report
                return record
            masked = mask_text(text)
            if masked != text:
                record.msg, record.args = masked, None
        return record

    masking.chat2api_masking = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(masking)


def mask_text(text: str) -> str:
    for secret, shown in _MASKED.items():
        if secret in text:
            text = text.replace(secret, shown)
        if "\u2026" in text:
            # mitmdump's flow dump cuts long URLs with "…", maybe inside the prefix
            for cut in range(len(secret) - 1, 3, -1):
                text = text.replace(secret[:cut] + "\u2026", shown + "\u2026")
    return text
