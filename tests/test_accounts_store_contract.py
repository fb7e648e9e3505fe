"""One storage test suite, two implementations: the files under DATA_DIR and Redis.

Every ``contract`` test runs against :class:`FileStore` and :class:`RedisStore`
(a throwaway ``redis-server``, a fresh key prefix per test). The tests after
them are about what only a shared store does: several instances at once, key
prefixes, Redis going away and coming back, and copying state both ways.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from accounts.filestore import FileStore
from accounts.migrate import copy_state, import_files
from accounts.redisstore import RedisStore
from accounts.store import CachedAccess, Health, SeedRecord, State, Store, seed_key
from accounts.tokens import token_id
from errors import UpstreamUnavailable
from tests.support.redis import RedisServer, run_redis

ROOT = Path(__file__).resolve().parents[1]
RT1 = "Hz4-iJ0pE6rOmpLzBiMNSdbSZrzpT6kS3Q2jEqbUJ1GJC"
RT2 = "Zz4-iJ0pE6rOmpLzBiMNSdbSZrzpT6kS3Q2jEqbUJ1GJD"
RT3 = "rt_" + "c" * 40
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with run_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


Factory = Callable[..., Store]


@pytest.fixture(params=["files", "redis"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """``make(clock=..., same=True)``: a store; ``same`` = another handle on the same state
    (a second instance for Redis; the same object for files, which are not shared)."""
    made: list[Store] = []
    if request.param == "files":

        def files(clock: Callable[[], float] = time.time, same: bool = False) -> Store:
            if same and made:
                return made[0]
            store = FileStore(tmp_path / "data", clock=clock)
            made.append(store)
            return store

        return files
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = f"t{next(_prefixes)}-{time.monotonic_ns()}"

    def shared(clock: Callable[[], float] = time.time, same: bool = False) -> Store:
        return RedisStore(server.url, prefix=prefix, clock=clock)

    return shared


def run(make: Factory, body: Callable[..., Awaitable[None]], **kwargs: object) -> None:
    async def main() -> None:
        store = make(**kwargs)
        await store.open()
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


# -- the contract -----------------------------------------------------------------------


def test_pool_keeps_order_and_normalises(make: Factory) -> None:
    async def body(store: Store) -> None:
        assert await store.tokens() == []
        added = await store.add_tokens([RT1, f"  {RT2} , team-1 ", RT1, ""])
        assert added == [RT1, f"{RT2},team-1"]
        assert await store.add_tokens([RT1, RT3]) == [RT3]
        assert await store.tokens() == [RT1, f"{RT2},team-1", RT3]
        assert await store.remove_tokens([RT1, "not-there"]) == 1
        assert await store.tokens() == [f"{RT2},team-1", RT3]
        assert await store.add_tokens([RT1]) == [RT1]  # appended again at the end
        assert await store.tokens() == [f"{RT2},team-1", RT3, RT1]

    run(make, body)


def test_replace_token_keeps_account_order_and_health(make: Factory) -> None:
    async def body(store: Store) -> None:
        await store.add_tokens([RT1, f"{RT2},team-1", RT3])
        await store.set_health(token_id(f"{RT2},team-1"), Health(last_error="x"))
        new = "rotated_" + "x" * 30
        assert await store.replace_token(RT2, new) == 1
        assert await store.replace_token("unknown", new) == 0
        assert await store.tokens() == [RT1, f"{new},team-1", RT3]
        health = await store.health()
        assert health[token_id(f"{new},team-1")].last_error == "x"
        assert token_id(f"{RT2},team-1") not in health

    run(make, body)


def test_health_is_kept_for_pool_entries_only(make: Factory) -> None:
    async def body(store: Store) -> None:
        await store.add_tokens([RT1, RT2])
        bad = Health(state=State.BAD, reason="401", last_error="401", unauth_at="abc")
        await store.set_health(token_id(RT1), bad)
        await store.set_health("not-in-pool", Health(state=State.BAD))
        health = await store.health()
        assert health == {token_id(RT1): bad}
        await store.touch(token_id(RT2), 1234.5)
        await store.touch(token_id(RT1), 1240.0, "503")
        await store.touch("not-in-pool", 1.0)
        health = await store.health()
        assert health[token_id(RT2)] == Health(last_used=1234.5)
        assert health[token_id(RT1)] == bad.with_(last_used=1240.0, last_error="503")
        assert "not-in-pool" not in health
        # A durable write after a touch keeps what it was given.
        await store.set_health(token_id(RT1), health[token_id(RT1)].with_(state=State.HEALTHY))
        assert (await store.health())[token_id(RT1)].last_used == 1240.0
        await store.remove_tokens([RT1])
        assert token_id(RT1) not in await store.health()
        await store.clear_tokens()
        assert await store.tokens() == [] and await store.health() == {}

    run(make, body)


def test_error_list(make: Factory) -> None:
    async def body(store: Store) -> None:
        assert await store.add_error(RT1)
        assert await store.add_error(RT2)
        assert not await store.add_error(RT1)
        assert await store.errors() == [RT1, RT2]
        await store.clear_errors()
        assert await store.errors() == []

    run(make, body)


def test_refresh_cache_with_rotation_aliases(make: Factory) -> None:
    async def body(store: Store) -> None:
        now = float(int(time.time()))
        assert await store.cached_access(RT1) is None
        first = CachedAccess(token="AT1", timestamp=now, expires=now + 3600.5)
        await store.put_access(RT1, first)
        assert await store.cached_access(RT1) == first
        second = CachedAccess(token="AT2", timestamp=now + 1)
        await store.put_access(RT2, second, rotated_from=RT1)
        assert await store.cached_access(RT2) == second
        alias = await store.cached_access(RT1)
        assert alias == CachedAccess(token=None, timestamp=now + 1, rotated_to=RT2)
        assert not alias.valid(now, 0)
        # Aliases older than 30 days are dropped with the next rotation.
        old = CachedAccess(token="AT3", timestamp=now - 31 * 86400)
        await store.put_access("RT-new", old, rotated_from="RT-old")
        await store.put_access("RT-newer", second, rotated_from="RT-other")
        assert await store.cached_access("RT-old") is None
        assert await store.cached_access(RT1) is not None

    run(make, body)


def test_rate_limit_memory_expires(make: Factory) -> None:
    clock = Clock()

    async def body(store: Store) -> None:
        await store.set_limit("gpt-4o", "e1", clock.now + 30)
        await store.set_limit("gpt-4o", "e2", clock.now + 90)
        await store.set_limit("o3", "e1", clock.now + 10)
        assert await store.limits("gpt-4o") == {"e1": clock.now + 30, "e2": clock.now + 90}
        assert await store.limits("other") == {}
        clock.now += 60
        assert await store.limits("gpt-4o") == {"e2": clock.now + 30}
        assert await store.limits("o3") == {}

    run(make, body, clock=clock)


def test_seeds_and_conversation_ownership(make: Factory) -> None:
    clock = Clock()

    async def body(store: Store) -> None:
        a, b = seed_key("seed-alice"), seed_key("seed-bob")
        record = SeedRecord(entry_id="e1", created=5.0)
        await store.put_seed(a, record)
        await store.put_seed(b, SeedRecord(token=RT1, created=6.0))
        assert await store.seed(a) == record
        assert await store.seed(seed_key("nobody")) is None
        assert set(await store.seeds()) == {a, b}
        moved = SeedRecord(entry_id="e2", created=5.0)
        await store.put_seed(a, moved)
        assert await store.seed(a) == moved
        for cid in ("c1", "c2", "c3"):
            clock.now += 1
            assert await store.own_conversation(cid, a)
        assert await store.own_conversation("c2", a)  # again: still the owner
        assert not await store.own_conversation("c2", b)  # taken
        assert await store.own_conversation("c9", b)
        assert await store.conversation_owner("c2") == a
        assert await store.conversation_owner("nope") is None
        assert await store.owned_conversations(a) == ["c3", "c2", "c1"]  # newest first
        assert await store.owned_conversations(b) == ["c9"]
        assert await store.remove_seed(a)
        assert not await store.remove_seed(a)
        assert await store.conversation_owner("c1") == a  # ownership outlives the seed

    run(make, body, clock=clock)


def test_counters_and_locks(make: Factory) -> None:
    async def body(store: Store) -> None:
        assert [await store.next_counter("rr") for _ in range(3)] == [0, 1, 2]
        assert await store.next_counter("other") == 0
        inside: list[int] = []

        async def worker(i: int) -> None:
            async with store.lock("x"):
                inside.append(i)
                assert len(inside) == 1
                await asyncio.sleep(0.001)
                inside.pop()

        await asyncio.gather(*(worker(i) for i in range(10)))
        async with store.lock("x"):  # free again
            pass

    run(make, body)


def test_concurrent_writers_all_land(make: Factory) -> None:
    lines = [f"rt_{i:04d}_" + "q" * 30 for i in range(40)]

    async def body(store: Store) -> None:
        await asyncio.gather(*(store.add_tokens([line]) for line in lines))
        await asyncio.gather(*(store.add_error(line) for line in lines[:10]))
        assert sorted(await store.tokens()) == lines
        assert sorted(await store.errors()) == lines[:10]

    run(make, body)


def test_export_and_import_round_trip(make: Factory, tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        await store.add_tokens([RT1, f"{RT2},team-1"])
        await store.add_error(RT3)
        await store.set_health(token_id(RT1), Health(state=State.COOLING, until=99.0))
        now = float(int(time.time()))
        await store.put_access(RT2, CachedAccess(token="AT", timestamp=now, expires=now + 99))
        await store.put_access("RTn", CachedAccess(token="AT2", timestamp=now), rotated_from=RT1)
        await store.put_seed(seed_key("s"), SeedRecord(entry_id=token_id(RT1), created=1.0))
        await store.own_conversation("c1", seed_key("s"))
        snapshot = await store.export_state()
        assert snapshot.tokens == [RT1, f"{RT2},team-1"]
        assert snapshot.errors == [RT3]
        assert snapshot.health[token_id(RT1)].state is State.COOLING
        assert set(snapshot.refresh) == {RT1, RT2, "RTn"}
        assert snapshot.owners["c1"][0] == seed_key("s")

        other = FileStore(tmp_path / "copy")
        await other.open()
        await other.add_tokens([RT3])
        await other.import_state(snapshot)
        again = await other.export_state()
        assert again.tokens == [RT3, RT1, f"{RT2},team-1"]  # merged, order kept
        assert again.errors == snapshot.errors and again.health == snapshot.health
        assert again.refresh == snapshot.refresh and again.seeds == snapshot.seeds
        assert again.owners == snapshot.owners
        reopened = FileStore(tmp_path / "copy")
        await reopened.open()
        assert await reopened.export_state() == again  # durable

    run(make, body)


# -- what only the shared store does --------------------------------------------------------


def shared(server: RedisServer, prefix: str, **kwargs: object) -> RedisStore:
    return RedisStore(server.url, prefix=prefix, **kwargs)  # type: ignore[arg-type]


def test_instances_see_each_others_changes_at_once(redis_server: RedisServer) -> None:
    async def main() -> None:
        a, b = shared(redis_server, "inst"), shared(redis_server, "inst")
        other = shared(redis_server, "another-deployment")
        for store in (a, b, other):
            await store.open()
        await a.add_tokens([RT1, RT2])
        assert await b.tokens() == [RT1, RT2]
        assert await other.tokens() == []  # prefixes keep deployments apart
        await a.set_health(token_id(RT1), Health(state=State.BAD, reason="401"))
        assert (await b.health())[token_id(RT1)].state is State.BAD
        counts = await asyncio.gather(*(s.next_counter("rr") for s in (a, b) * 10))
        assert sorted(counts) == list(range(20))  # one global counter
        await a.put_seed("k", SeedRecord(entry_id="e"))
        assert await b.seed("k") == SeedRecord(entry_id="e")
        assert await a.own_conversation("c", "k")
        assert not await b.own_conversation("c", "k2")
        await a.set_limit("gpt-4o", "e1", time.time() + 60)
        assert "e1" in await b.limits("gpt-4o")
        for store in (a, b, other):
            await store.close()

    asyncio.run(main())


def test_the_lock_is_shared_and_expires_with_a_dead_holder(redis_server: RedisServer) -> None:
    async def main() -> None:
        a = shared(redis_server, "locks", lock_ttl=0.5)
        b = shared(redis_server, "locks", lock_ttl=0.5)
        order: list[str] = []

        async def hold(store: RedisStore, name: str, seconds: float) -> None:
            async with store.lock("refresh:x"):
                order.append(name + " in")
                await asyncio.sleep(seconds)
                order.append(name + " out")

        first = asyncio.create_task(hold(a, "a", 0.2))
        await asyncio.sleep(0.05)
        await hold(b, "b", 0)
        await first
        assert order == ["a in", "a out", "b in", "b out"]
        # A holder that died (its key left behind) blocks the others only until the TTL.
        await redis_server_set(a, "locks:lock:refresh:y", "dead-holder", px=500)
        started = time.monotonic()
        async with b.lock("refresh:y"):
            assert 0.2 < time.monotonic() - started < 2.0
        await a.close()
        await b.close()

    asyncio.run(main())


async def redis_server_set(store: RedisStore, key: str, value: str, *, px: int) -> None:
    await store._r.set(key, value, px=px)


def test_redis_going_away_and_coming_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="accounts.redisstore")
    with run_redis(tmp_path / "redis") as server:

        async def main() -> None:
            store = shared(server, "outage", retry_every=0.2)
            await store.open()
            await store.add_tokens([RT1, RT2])
            await store.set_health(token_id(RT1), Health(state=State.BAD))
            await store.put_seed("k", SeedRecord(entry_id="e"))
            await store.tokens(), await store.health(), await store.seed("k")
            await store.errors()
            assert await store.next_counter("rr") == 0

            server.stop()  # refused connections
            started = time.monotonic()
            assert await store.tokens() == [RT1, RT2]  # from the local copy
            assert (await store.health())[token_id(RT1)].state is State.BAD
            assert await store.seed("k") == SeedRecord(entry_id="e")
            await store.touch(token_id(RT2), 5.0)  # best effort: no error
            await store.set_limit("gpt-4o", "e", time.time() + 60)
            assert "e" in await store.limits("gpt-4o")
            assert await store.next_counter("rr") == 1  # round robin goes on locally
            for write in (
                store.add_tokens([RT3]),
                store.set_health(token_id(RT2), Health(state=State.BAD)),
                store.put_access(RT1, CachedAccess(token="AT", timestamp=1.0)),
                store.put_seed("k2", SeedRecord(entry_id="e")),
                store.own_conversation("c", "k"),
                store.add_error(RT3),
            ):
                with pytest.raises(UpstreamUnavailable, match=r"shared state \(Redis\)"):
                    await write
            with pytest.raises(UpstreamUnavailable):
                await store.seed("never-read-before")  # nothing to fall back on
            with pytest.raises(UpstreamUnavailable):
                async with store.lock("refresh:z"):
                    pass
            assert time.monotonic() - started < 5
            outage = [r for r in caplog.records if "unreachable" in r.getMessage()]
            assert len(outage) == 1 and outage[0].levelno == logging.WARNING  # once

            server.start()
            await asyncio.sleep(0.3)  # retry_every
            assert await store.add_tokens([RT3]) == [RT3]
            assert await store.tokens() == [RT1, RT2, RT3]
            assert any("reachable again" in r.getMessage() for r in caplog.records)
            await store.close()

        asyncio.run(main())


def test_a_frozen_redis_does_not_hang_calls(tmp_path: Path) -> None:
    with run_redis(tmp_path / "redis") as server:

        async def main() -> None:
            store = RedisStore(server.url, prefix="frozen", socket_timeout=0.3, retry_every=5)
            await store.open()
            await store.add_tokens([RT1])
            await store.tokens()
            with server.pause():
                started = time.monotonic()
                assert await store.tokens() == [RT1]
                with pytest.raises(UpstreamUnavailable):
                    await store.add_tokens([RT2])
                assert time.monotonic() - started < 2.0  # timeouts, then fail fast
            await store.close()

        asyncio.run(main())


def test_start_up_import_and_the_migrate_command(redis_server: RedisServer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "token.txt").write_text(f"# mine\n{RT1}\n{RT2},team-1\n")
    (data / "error_token.txt").write_text(f"{RT3}\n")
    (data / "refresh_map.json").write_text('{"%s": {"token": "AT", "timestamp": 7}}' % RT1)

    async def main() -> None:
        store = shared(redis_server, "import")
        await store.open()
        first, second = await asyncio.gather(import_files(store, data), import_files(store, data))
        assert (first is None) != (second is None)  # exactly one import
        assert await store.tokens() == [RT1, f"{RT2},team-1"]
        assert await store.errors() == [RT3]
        assert (await store.cached_access(RT1)) == CachedAccess(token="AT", timestamp=7.0)
        assert await import_files(store, data) is None  # the pool is not empty any more
        await store.put_seed("k", SeedRecord(entry_id=token_id(RT1)))
        await store.close()

    asyncio.run(main())

    env = {
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_server.url,
        "REDIS_PREFIX": "import",
        "DATA_DIR": str(tmp_path / "back"),
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-m", "accounts.migrate", "--to", "files", "--config", "/nonexistent"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "2 token(s)" in out.stdout and "1 seed(s)" in out.stdout
    back = (tmp_path / "back" / "token.txt").read_text().splitlines()
    assert back == [RT1, f"{RT2},team-1"]
    assert "k" in (tmp_path / "back" / "seeds.json").read_text()

    env.update(REDIS_PREFIX="copied", DATA_DIR=str(tmp_path / "back"))
    out = subprocess.run(
        [sys.executable, "-m", "accounts.migrate", "--to", "redis", "--config", "/nonexistent"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr

    async def check() -> None:
        a, b = shared(redis_server, "import"), shared(redis_server, "copied")
        assert await a.export_state() == await b.export_state()
        await a.close()
        await b.close()

    asyncio.run(check())


def test_copy_state_between_two_stores_is_complete(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async def main() -> None:
        files = FileStore(tmp_path / "f")
        await files.open()
        await files.add_tokens([RT1])
        await files.own_conversation("c1", "owner")
        store = shared(redis_server, "copy")
        await copy_state(files, store)
        snap = await store.export_state()
        assert snap.tokens == [RT1] and snap.owners["c1"][0] == "owner"
        await store.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("redis://127.0.0.1:6379/0", True),
        ("rediss://:secret@redis.example:6380/1", True),
        ("unix:///run/redis/redis.sock", True),
        ("", True),  # files
        ("http://127.0.0.1:6379", False),
        ("redis://", False),
        ("redis://h:99999/0", False),
        ("unix://", False),
    ],
)
def test_redis_settings_are_checked(url: str, ok: bool, tmp_path: Path) -> None:
    from accounts.migrate import make_store
    from settings import SettingsError, load_settings

    env = {"REDIS_URL": url, "DATA_DIR": str(tmp_path)}
    if not ok:
        with pytest.raises(SettingsError, match="REDIS_URL") as info:
            load_settings(None, env)
        assert "secret" not in str(info.value)
        return
    settings = load_settings(None, env)
    store = make_store(settings)
    assert isinstance(store, RedisStore if url else FileStore)
    if url:
        assert "secret" not in repr(store)
    with pytest.raises(SettingsError, match="REDIS_PREFIX"):
        load_settings(None, {"REDIS_PREFIX": "has space"})
