"""patches/curl.py: a reused curl handle sends only its current request's headers,
and without the patch a handle is not reused at all (still correct)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import patches
from upstream.http import BackendHttp


async def _echo_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers each request on a connection with its request head."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(head), head))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


@pytest.fixture(params=["on", "off"])
def patch(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    decided = dict(patches._decided)
    decided["curl_headers"] = None if request.param == "on" else "MITM_PATCHES=off"
    monkeypatch.setattr(patches, "_decided", decided)
    yield str(request.param)


def test_the_shapes_it_replaces_are_there() -> None:
    from patches import curl

    assert curl.fits() is None


def test_each_request_sends_only_its_own_headers(patch: str) -> None:
    async def main() -> tuple[list[bytes], int]:
        server = await asyncio.start_server(_echo_headers, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x"
        http = BackendHttp()
        heads = []
        try:
            for i in range(3):
                answer = await http.request(
                    "GET", url, headers={f"x-turn-{i}": "yes"}, impersonate=None, timeout=5
                )
                heads.append(answer.body.lower())
            idle = sum(len(handles) for handles in http.transport._idle.values())
        finally:
            await http.close()
            server.close()
        return heads, idle

    heads, idle = asyncio.run(main())
    for i, head in enumerate(heads):
        assert f"x-turn-{i}: yes".encode() in head
        others = [j for j in range(3) if j != i]
        assert not any(f"x-turn-{j}".encode() in head for j in others), head
    # With the patch the handle is kept for the next request; without it, closed.
    assert idle == (1 if patch == "on" else 0)
