"""The loopback bridge's bookkeeping: an answer nobody claims is stopped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from service.bridge import Bridge, BridgeJob


def test_drop_stops_an_unclaimed_answer_and_ignores_unknown_tokens() -> None:
    async def main() -> None:
        closed = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            try:
                yield b"data: 1\n\n"
                await asyncio.sleep(30)
            finally:
                closed.set()

        bridge = Bridge()
        await bridge.start()
        gen = body()
        await gen.__anext__()  # started, as a primed answer is
        url = bridge.register(BridgeJob(status=200, headers={}, body=gen))
        token = url.rsplit("/", 1)[1]
        bridge.drop("no-such-token")
        bridge.drop(token)
        await asyncio.wait_for(closed.wait(), 1)
        # Claiming it afterwards finds nothing.
        reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
        writer.write(f"GET /bridge/{token} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 404")
        writer.close()
        await bridge.stop()

    asyncio.run(main())
