"""Which network addresses a stranger may make chat2api connect to.

Two callers ask: the media fetcher (``image_url`` parts, :mod:`service.uploads`)
and the HTTPS-proxy listener (``CONNECT`` and absolute-form requests,
:mod:`service.shield`). Both resolve a host the way the connection itself will
(``getaddrinfo`` accepts ``127.1``, ``0x7f000001``, ``2130706433``, ``LOCALHOST``
…), check every address, and connect only to a checked one.

Refused: anything not globally routable (loopback, private, link-local with the
cloud metadata address, shared, reserved, unspecified ``0.0.0.0`` / ``::``,
multicast), Azure's public-looking metadata address, and IPv6 forms that carry
an IPv4 address inside (mapped, 6to4, Teredo, NAT64), including the deprecated
IPv4-compatible ``::a.b.c.d`` and the SIIT ``::ffff:0:a.b.c.d``, which Python's
``is_global`` calls global but a kernel may route to the embedded address
(``docs/api-security.md``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
# ::a.b.c.d (IPv4-compatible, RFC 4291 §2.5.5.1) and ::ffff:0:a.b.c.d (SIIT, RFC 2765).
_EMBEDDING = (ipaddress.IPv6Network("::/96"), ipaddress.IPv6Network("::ffff:0:0:0/96"))
_METADATA = {ipaddress.ip_address("168.63.129.16"), ipaddress.ip_address("fd00:ec2::254")}


def forbidden_address(ip: Address) -> bool:
    """Whether a stranger's request may not reach ``ip`` (see the module docstring)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return True
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return forbidden_address(embedded)
        if any(ip in net for net in _NAT64 + _EMBEDDING):
            return True
    if ip in _METADATA:
        return True
    return not ip.is_global or ip.is_multicast


def parse_address(text: str) -> Address | None:
    """``text`` as an IP address (brackets and a zone allowed), or None for a name."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


async def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to, as the connection would resolve it;
    raises ValueError if it does not resolve."""
    literal = parse_address(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        reason = getattr(e, "strerror", None) or type(e).__name__
        raise ValueError(f"the host {host!r} cannot be resolved ({reason})") from None
    out: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in out:
            out.append(address)
    return out


def host_listed(host: str, port: int, listed: Iterable[str], *, exact: bool = False) -> bool:
    """Whether ``host`` or ``host:port`` (only the latter if ``exact``) is on an
    allow list of lower-case entries."""
    host = host.lower().strip("[]")
    names = {f"{host}:{port}", f"[{host}]:{port}"}
    if not exact:
        names.add(host)
    return any(entry in names for entry in listed)


def is_local(ip: Address) -> bool:
    """Whether ``ip`` belongs to this machine (binding to it succeeds)."""
    if ip.is_unspecified or ip.is_loopback:
        return True
    family = socket.AF_INET6 if isinstance(ip, ipaddress.IPv6Address) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((str(ip), 0))
    except OSError:
        return False
    return True


class UrlGuard:
    """The media fetcher's address check (service/uploads.py), with an allow-list."""

    def __init__(self, allow_hosts: tuple[str, ...]) -> None:
        self.allow_hosts = frozenset(h.lower() for h in allow_hosts)

    def allowed(self, host: str, port: int) -> bool:
        host = host.lower()
        return host in self.allow_hosts or f"{host}:{port}" in self.allow_hosts

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to; raises ValueError if any is forbidden."""
        found = await resolve(host, port)
        if self.allowed(host, port):
            return [str(a) for a in found]
        bad = [a for a in found if forbidden_address(a)]
        if bad or not found:
            raise ValueError(
                f"the host {host!r} resolves to {bad[0] if bad else 'nothing'}, a local or "
                "private address this server does not fetch from"
            )
        return [str(a) for a in found]
