"""What the benchmarks share: where the real captures are, and how a rate is taken."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

FIXTURES = Path("/work/shared/fixtures/chatgpt")
if not FIXTURES.is_dir():
    FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "chatgpt"


def per_second(fn: Callable[[], None], n: int, seconds: float) -> float:
    """``n`` over the best time of ``fn`` in the rounds that fit in ``seconds``:
    the machine's other load only slows rounds down."""
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() >= deadline:
            return n / best
