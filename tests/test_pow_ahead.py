"""Requirements tokens made ahead of time: fresh, used once, per profile."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from pow.ahead import AheadOfTime


class Maker:
    def __init__(self) -> None:
        self.made = 0

    def __call__(self, profile: Any, rng: random.Random) -> tuple[list[Any], str]:
        self.made += 1
        return [profile, self.made], f"{profile}-{self.made}"


def test_prepared_after_take_and_handed_out_once() -> None:
    async def run() -> list[str]:
        maker = Maker()
        ahead = AheadOfTime(maker)
        rng = random.Random(0)
        first = ahead.take("a", rng)[1]  # none prepared yet: made now
        await asyncio.sleep(0)  # the loop prepares the next one
        second = ahead.take("a", rng)[1]
        third = ahead.take("a", rng)[1]  # taken again before a new one was made
        return [first, second, third]

    assert asyncio.run(run()) == ["a-1", "a-2", "a-3"]


def test_stale_token_is_thrown_away() -> None:
    now = [0.0]

    async def run() -> tuple[str, str]:
        ahead = AheadOfTime(Maker(), max_age=5.0, clock=lambda: now[0])
        rng = random.Random(0)
        ahead.take("a", rng)
        await asyncio.sleep(0)  # "a-2" prepared at t=0
        now[0] = 6.0
        stale = ahead.take("a", rng)[1]
        await asyncio.sleep(0)  # "a-4" prepared at t=6
        now[0] = 10.0
        return stale, ahead.take("a", rng)[1]

    assert asyncio.run(run()) == ("a-3", "a-4")


def test_profiles_do_not_share_tokens() -> None:
    async def run() -> tuple[list[Any], list[Any]]:
        ahead = AheadOfTime(Maker())
        rng = random.Random(0)
        ahead.take("a", rng)
        await asyncio.sleep(0)
        return ahead.take("b", rng)[0], ahead.take("a", rng)[0]

    b, a = asyncio.run(run())
    assert b[0] == "b" and a[0] == "a"
