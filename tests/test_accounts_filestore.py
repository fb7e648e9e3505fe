"""accounts.filestore: original data folders, atomic durable writes, crash safety."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from accounts import filestore
from accounts.filestore import FileStore
from accounts.store import CachedAccess, Health, State
from accounts.tokens import token_id

ROOT = Path(__file__).resolve().parents[1]
RT1 = "Hz4-iJ0pE6rOmpLzBiMNSdbSZrzpT6kS3Q2jEqbUJ1GJC"
RT2 = "Zz4-iJ0pE6rOmpLzBiMNSdbSZrzpT6kS3Q2jEqbUJ1GJD"


def opened(path: Path) -> FileStore:
    store = FileStore(path)
    asyncio.run(store.open())
    return store


def test_reads_an_original_data_folder(tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text(
        f"# my accounts\n{RT1}\n\n  {RT2} , team-1\n#disabled\n{RT1}\nnot a token\n"
    )
    (tmp_path / "error_token.txt").write_text(f"{RT2}\n")
    (tmp_path / "refresh_map.json").write_text(json.dumps({RT1: {"token": "AT", "timestamp": 1}}))
    (tmp_path / "fp_map.json").write_text("{}")  # ignored, left alone

    async def main() -> None:
        store = FileStore(tmp_path)
        await store.open()
        assert await store.tokens() == [RT1, f"{RT2},team-1", "not a token"]
        assert await store.errors() == [RT2]
        cached = await store.cached_access(RT1)
        assert cached == CachedAccess(token="AT", timestamp=1.0)
        await store.add_tokens(["fk-new-gateway-key"])

    asyncio.run(main())
    text = (tmp_path / "token.txt").read_text()
    assert text.startswith("# my accounts\n") and "#disabled\n" in text  # comments kept
    assert text.endswith("fk-new-gateway-key\n")
    assert (tmp_path / "fp_map.json").read_text() == "{}"


def test_changes_survive_reopening(tmp_path: Path) -> None:
    async def change() -> None:
        store = FileStore(tmp_path)
        await store.open()
        assert await store.add_tokens([RT1, f"{RT2},team-1", RT1]) == [RT1, f"{RT2},team-1"]
        await store.set_health(token_id(RT1), Health(state=State.BAD, reason="401"))
        await store.set_health("not-in-pool", Health(state=State.BAD))  # ignored
        await store.replace_token(RT2, "rotated_" + "x" * 30)
        await store.add_error(RT1)
        assert not await store.add_error(RT1)
        await store.put_access(
            "new", CachedAccess(token="AT2", timestamp=time.time()), rotated_from="old"
        )

    asyncio.run(change())
    store = opened(tmp_path)

    async def check() -> None:
        new_line = "rotated_" + "x" * 30 + ",team-1"
        assert await store.tokens() == [RT1, new_line]
        assert (await store.health())[token_id(RT1)].state is State.BAD
        assert "not-in-pool" not in await store.health()
        assert await store.errors() == [RT1]
        old = await store.cached_access("old")
        assert old is not None and old.rotated_to == "new" and old.token is None
        await store.remove_tokens([RT1])
        assert await store.tokens() == [new_line]
        assert token_id(RT1) not in await store.health()
        await store.clear_tokens()
        await store.clear_errors()

    asyncio.run(check())
    assert opened(tmp_path)._lines == []
    assert (tmp_path / "error_token.txt").read_text() == ""


def test_concurrent_writers_all_land(tmp_path: Path) -> None:
    lines = [f"rt_{i:04d}_" + "q" * 30 for i in range(60)]

    async def main() -> None:
        store = FileStore(tmp_path)
        await store.open()
        await asyncio.gather(*(store.add_tokens([line]) for line in lines))
        await asyncio.gather(*(store.add_error(line) for line in lines[:20]))

    asyncio.run(main())
    store = opened(tmp_path)
    assert sorted(store._lines) == lines
    assert sorted(store._errors) == lines[:20]
    assert not list(tmp_path.glob(".*.tmp"))


def test_writes_run_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[bool] = []
    real = filestore.atomic_write

    def spy(path: Path, data: bytes) -> None:
        threads.append(threading.current_thread() is threading.main_thread())
        real(path, data)

    monkeypatch.setattr(filestore, "atomic_write", spy)
    store = opened(tmp_path)
    asyncio.run(store.add_tokens([RT1]))
    assert threads == [False]


def test_stale_temp_files_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".token.txt.abc.tmp").write_text("half")
    opened(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))


def test_files_are_private(tmp_path: Path) -> None:
    store = opened(tmp_path)
    asyncio.run(store.add_tokens([RT1]))
    assert (tmp_path / "token.txt").stat().st_mode & 0o077 == 0


def test_locks_exclude_and_are_dropped(tmp_path: Path) -> None:
    store = opened(tmp_path)
    inside: list[int] = []

    async def worker(i: int) -> None:
        async with store.lock("x"):
            inside.append(i)
            assert len(inside) == 1
            await asyncio.sleep(0)
            inside.pop()

    async def main() -> None:
        await asyncio.gather(*(worker(i) for i in range(10)))
        assert [await store.next_counter("rr") for _ in range(3)] == [0, 1, 2]

    asyncio.run(main())
    assert store._locks == {}


CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from accounts.filestore import FileStore
    from accounts.store import CachedAccess

    async def main():
        store = FileStore(sys.argv[1])
        await store.open()
        async def one(i):
            token = f"rt_{i:06d}_" + "k" * 30
            await store.add_tokens([token])
            await store.put_access(token, CachedAccess(token=f"at{i}", timestamp=1.0))
            if i % 3 == 0:
                await store.add_error(token)
            print("ack", i, flush=True)
        i = 0
        while True:
            await asyncio.gather(*(one(i + j) for j in range(4)))
            i += 4

    asyncio.run(main())
    """
)


def test_sigkill_mid_write_loses_nothing_acknowledged(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(CRASH_SCRIPT)
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(data)], stdout=subprocess.PIPE, env=env, text=True
    )
    acked: list[int] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            acked.append(int(line.split()[1]))
            if len(acked) >= 150:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    acked += [int(x.split()[1]) for x in proc.stdout.read().splitlines() if x.startswith("ack")]
    proc.stdout.close()
    assert len(acked) >= 150

    store = FileStore(data)
    asyncio.run(store.open())  # every file parses (the store would have logged otherwise)
    json.loads((data / "refresh_map.json").read_text())
    lines = set(store._lines)
    for i in acked:
        token = f"rt_{i:06d}_" + "k" * 30
        assert token in lines
        assert store._refresh[token]["token"] == f"at{i}"
        if i % 3 == 0:
            assert token in store._errors
    assert all(line.startswith("rt_") and line.endswith("k" * 30) for line in lines)
