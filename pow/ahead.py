"""Requirements tokens prepared just ahead of use (issue 7: off the critical path).

A classic turn starts with ``POST chat-requirements {"p": requirements token}``;
the token is a ``0fffff`` search over a config that carries the current time.
:class:`AheadOfTime` keeps at most one such (config, token) pair per browser
profile, made on the event loop right after the previous one was taken (while
that turn waits for the network), and hands it out once: never reused, and
thrown away when it is older than ``max_age`` seconds, so the backend sees a
token as fresh as one made on the spot. Nothing the backend issues is kept.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Hashable
from typing import Any

Made = tuple[list[Any], str]


class AheadOfTime:
    def __init__(
        self,
        make: Callable[[Any, random.Random], Made],
        *,
        max_age: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._make = make
        self._max_age = max_age
        self._clock = clock
        self._ready: dict[Hashable, tuple[float, Made]] = {}
        self._rng = random.Random()  # browser noise, not a secret (seeded from os.urandom)

    def take(self, profile: Hashable, rng: random.Random) -> Made:
        """A fresh (config, token) for ``profile``: the prepared one, or one made now."""
        entry = self._ready.pop(profile, None)
        if entry is not None and self._clock() - entry[0] <= self._max_age:
            made = entry[1]
        else:
            made = self._make(profile, rng)
        try:
            asyncio.get_running_loop().call_soon(self._prepare, profile)
        except RuntimeError:  # no loop (a synchronous caller): nothing is prepared
            pass
        return made

    def _prepare(self, profile: Hashable) -> None:
        # Keys carry the site's page too (upstream/classic.py): when it changes, the
        # pairs made for the old one would never be taken, so stale ones go here.
        now = self._clock()
        for key in [k for k, (at, _) in self._ready.items() if now - at > self._max_age]:
            del self._ready[key]
        if profile not in self._ready:
            self._ready[profile] = (now, self._make(profile, self._rng))
