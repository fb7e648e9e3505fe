"""Stored responses in files: round trip, expiry, ownership by key hash, ids that are
never paths, atomic writes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from service.responsestore import FileResponseStore, StoredResponse, owner_of


def test_file_store_round_trip_expiry_and_owner(tmp_path: Path) -> None:
    now = [1000.0]
    store = FileResponseStore(tmp_path / "responses", ttl=60, clock=lambda: now[0])
    record = StoredResponse(
        id="resp_abcdefgh12345678",
        owner=owner_of("key-a"),
        created=1000.0,
        input=[{"role": "user", "content": "hi"}],
        output=[{"type": "message", "role": "assistant", "content": []}],
        response={"id": "resp_abcdefgh12345678"},
    )

    async def run() -> None:
        await store.put(record)
        got = await store.get(record.id)
        assert got == record and got.owned_by(owner_of("key-a"))
        assert not got.owned_by(owner_of("key-b"))
        assert got.history() == [*record.input, *record.output]
        assert await store.get("resp_../../etc") is None  # not an id: never a path
        now[0] += 61
        assert await store.get(record.id) is None
        assert await store.delete(record.id) and not await store.delete(record.id)

    asyncio.run(run())
    assert list((tmp_path / "responses").glob(".*tmp")) == []  # atomic writes leave nothing
