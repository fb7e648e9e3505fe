"""``backend_dialect: auto``: the newer dialect first, the older one where it is not spoken.

For each upstream origin (``chatgpt_base_url`` may list several), the first turn
tries the newer dialect. When one of its own endpoints answers 404 or 405
(:class:`upstream.dialect.DialectNotSpoken`), the upstream is taken to speak
only the older one: the same turn is started again with it, and every later
turn to that upstream goes straight to it. A turn that the newer dialect
started is remembered the other way. The memory lasts as long as the process;
a restart asks again.
"""

from __future__ import annotations

import logging
import random

from upstream.context import TurnContext
from upstream.dialect import Dialect, DialectNotSpoken, Turn, TurnBodies

log = logging.getLogger(__name__)


class AutoDialect:
    name = "auto"

    def __init__(self, newer: Dialect, older: Dialect) -> None:
        self.newer = newer
        self.older = older
        self._spoken: dict[str, Dialect] = {}  # origin -> the dialect it speaks

    def dialect_for(self, origin: str) -> Dialect | None:
        """The dialect learnt for ``origin``, None while unknown."""
        return self._spoken.get(origin)

    async def open_conversation(
        self, ctx: TurnContext, bodies: TurnBodies, rng: random.Random
    ) -> Turn:
        known = self._spoken.get(ctx.origin)
        if known is not None:
            return await known.open_conversation(ctx, bodies, rng)
        try:
            turn = await self.newer.open_conversation(ctx, bodies, rng)
        except DialectNotSpoken as e:
            log.warning(
                "%s does not speak the %s backend dialect (HTTP %d); using %s for it from now on",
                ctx.origin,
                self.newer.name,
                e.backend_status,
                self.older.name,
            )
            self._spoken[ctx.origin] = self.older
            return await self.older.open_conversation(ctx, bodies, rng)
        if ctx.origin not in self._spoken:
            log.info("%s speaks the %s backend dialect", ctx.origin, self.newer.name)
            self._spoken[ctx.origin] = self.newer
        return turn
