"""Per-address limits on the mirror's sign-ups (issue 14, finding 6 and 9).

New seeds and sign-in refreshes cost a pool account or an outbound OAuth call, and
the sign-in page is open to anyone who reaches the port: each client address gets a
budget per hour (a sliding window). IPv6 addresses count by their /64, which one
client usually holds whole. The memory is per process and bounded; behind a front
proxy every client shares the proxy's address, so the limits apply to all together.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable

HOUR = 3600.0
MAX_ADDRESSES = 10_000


def address_key(address: str) -> str:
    """The key one client is counted under: its IPv4 address, or its IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class PerAddress:
    """At most ``per_hour`` events per address in any hour; 0 means no limit."""

    def __init__(
        self,
        per_hour: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self.per_hour = per_hour
        self.clock = clock
        self.max_addresses = max_addresses
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def take(self, address: str) -> float | None:
        """Count one event; None if allowed, else the seconds until one would be."""
        if self.per_hour <= 0:
            return None
        now = self.clock()
        key = address_key(address)
        times = self._seen.get(key)
        if times is None:
            times = self._seen[key] = deque()
        self._seen.move_to_end(key)
        while times and now - times[0] >= HOUR:
            times.popleft()
        if len(times) >= self.per_hour:
            return max(1.0, HOUR - (now - times[0]))
        times.append(now)
        while len(self._seen) > self.max_addresses:  # forget the longest quiet first
            self._seen.popitem(last=False)
        return None
