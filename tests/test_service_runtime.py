"""Requests that arrive while chat2api is still starting wait for it (bounded)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from service import runtime as rt
from settings import load_settings


def test_until_started_waits_for_start_and_is_bounded(tmp_path: Path) -> None:
    settings = load_settings(None, {"DATA_DIR": str(tmp_path)})

    async def main() -> None:
        runtime = rt.build_runtime(settings)
        assert await runtime.until_started(timeout=0.05) is False  # bounded, not a hang
        waiter = asyncio.ensure_future(runtime.until_started(timeout=5))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await runtime.start()
        assert await asyncio.wait_for(waiter, 1) is True
        assert await runtime.until_started(timeout=0) is True
        await runtime.stop()

    asyncio.run(main())
