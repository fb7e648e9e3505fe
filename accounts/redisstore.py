"""The Redis implementation of :class:`accounts.store.Store`: one account pool for
several chat2api instances (``REDIS_URL``).

Every key lives under ``<prefix>:`` (``REDIS_PREFIX``, default ``chat2api``), so
several deployments can share one server:

==================  ==============================================================
``pool``            sorted set: entry line → insertion number (the stable order)
``ids``             hash: entry id → line (which ids are in the pool)
``errors``          sorted set: dead token → insertion number
``seq``             the insertion numbers (INCR)
``health``          hash: entry id → :class:`Health` as JSON
``used``/``lasterr``  hashes: entry id → last use / last error (:meth:`touch`)
``refresh``         hash: refresh token → ``refresh_map.json``'s entry as JSON
``limits:<model>``  hash: entry id → until (the rate-limit memory)
``seeds``           hash: seed key → :class:`SeedRecord` as JSON
``owner``           hash: conversation id → owner seed key
``owned:<owner>``   sorted set: conversation id → created
``counter:<name>``  round-robin counters (INCR: global across instances)
``lock:<name>``     locks (SET NX PX with a timeout; released by their holder only)
==================  ==============================================================

Changes that read and write are single Lua scripts or transactions, so they are
atomic across instances. Nothing shared is cached while Redis answers: a mark
set by one instance is seen by the next read of every other.

When Redis is unreachable (refused, timed out, loading), reads are answered from
a local copy of their last answer for up to ``stale_for`` seconds, writes raise
:class:`UpstreamUnavailable` ("shared state (Redis) is unreachable: …", a 503),
the best-effort notes (:meth:`touch`, the rate-limit memory) and the round-robin
counters carry on locally, and the outage is logged once. For ``retry_every``
seconds after a failure calls fail at once instead of waiting for another
timeout; then the next call tries again, and the first answer ends the outage
(logged too). No call waits longer than the socket timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, ReadOnlyError, WatchError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from accounts.store import CachedAccess, Health, SeedRecord, Snapshot
from accounts.tokens import normalise_line, token_id
from errors import UpstreamUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

_ALIAS_SECONDS = 30 * 24 * 3600.0
# What "Redis is not there" looks like; anything else is a bug and raises as is.
_DOWN = (RedisConnectionError, RedisTimeoutError, BusyLoadingError, ReadOnlyError, OSError)

# Append the lines (ARGV: line, id, line, id, ...) not present yet; return those added.
_ADD_ORDERED = """
local added = {}
for i = 1, #ARGV, 2 do
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), ARGV[i])
    if KEYS[3] then redis.call('HSET', KEYS[3], ARGV[i + 1], ARGV[i]) end
    added[#added + 1] = ARGV[i]
  end
end
return added
"""
# Health for an id in the pool; the touch notes are folded into it by the caller.
_SET_HEALTH = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
end
"""
_TOUCH = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[3]) end
end
"""
# KEYS: owner hash, owned:<owner>; ARGV: conversation id, owner, created.
_OWN = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  return 1
end
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return 1 end
return 0
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def safe_url(url: str) -> str:
    """``url`` without its user, password and query (which may hold a password), for logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}{parts.path}"


class _Unreachable(Exception):
    pass


class RedisStore:
    """Account state in Redis, shared by every instance; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "chat2api",
        socket_timeout: float = 1.5,
        stale_for: float = 300.0,
        retry_every: float = 1.0,
        lock_ttl: float = 30.0,
        clock: Callable[[], float] = time.time,
        client: aioredis.Redis | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.stale_for = stale_for
        self.retry_every = retry_every
        self.lock_ttl = lock_ttl
        self._clock = clock
        # Typed Any: redis-py types its async methods as "Awaitable[T] | T".
        self._r: Any = client or aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            # One immediate retry (a pooled connection that died with a restart),
            # never a backoff: a call must not hang while Redis is away.
            retry=Retry(NoBackoff(), 1),
            health_check_interval=0,
        )
        self._add_ordered = self._r.register_script(_ADD_ORDERED)
        self._set_health = self._r.register_script(_SET_HEALTH)
        self._touch = self._r.register_script(_TOUCH)
        self._own = self._r.register_script(_OWN)
        self._unlock = self._r.register_script(_UNLOCK)
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._cache: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._counters: dict[str, int] = {}  # local round robin during an outage
        self._limits: dict[str, dict[str, float]] = {}  # this instance's own notes
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def __repr__(self) -> str:
        return f"RedisStore({safe_url(self.url)!r}, prefix={self.prefix!r})"

    # -- reachability -------------------------------------------------------------
    @property
    def reachable(self) -> bool:
        return self._down_since is None

    async def _run(self, call: Callable[[], Awaitable[T]]) -> T:
        if self._down_since is not None and time.monotonic() < self._retry_at:
            raise _Unreachable
        try:
            result = await call()
        except _DOWN as exc:
            self._retry_at = time.monotonic() + self.retry_every
            if self._down_since is None:
                self._down_since = time.monotonic()
                # A warning, not an error: mitmdump exits on an error logged at start-up.
                log.warning(
                    "shared state (Redis at %s) is unreachable: %s. Reads use the local "
                    "copy for up to %.0f s, changes fail until it is back.",
                    safe_url(self.url),
                    _describe(exc),
                    self.stale_for,
                )
            raise _Unreachable from exc
        if self._down_since is not None:
            log.warning(
                "shared state (Redis at %s) is reachable again after %.1f s",
                safe_url(self.url),
                time.monotonic() - self._down_since,
            )
            self._down_since = None
        return result

    def _error(self) -> UpstreamUnavailable:
        return UpstreamUnavailable(
            f"shared state (Redis) is unreachable: {safe_url(self.url)}; try again later."
        )

    async def _read(self, key: tuple[str, ...], call: Callable[[], Awaitable[T]]) -> T:
        """A read through to Redis, remembered for the outages."""
        try:
            value = await self._run(call)
        except _Unreachable:
            hit = self._cache.get(key)
            if hit is not None and time.monotonic() - hit[0] <= self.stale_for:
                return _copy(hit[1])  # type: ignore[no-any-return]
            raise self._error() from None
        if len(self._cache) > 10_000:
            self._cache.clear()  # a crude bound: seed and conversation keys are many
        self._cache[key] = (time.monotonic(), value)
        return _copy(value)  # type: ignore[no-any-return]

    async def _write(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await self._run(call)
        except _Unreachable:
            raise self._error() from None

    async def ping(self) -> None:
        """Raise UpstreamUnavailable unless Redis answers now (readiness, ops/health.py)."""
        await self._write(self._r.ping)

    # -- lifecycle --------------------------------------------------------------------
    async def open(self) -> None:
        try:
            await self._run(self._r.ping)
        except _Unreachable:
            pass  # logged; every call tries again
        else:
            log.info("shared state: Redis at %s, keys under %s:", safe_url(self.url), self.prefix)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._r.aclose()

    # -- pool ---------------------------------------------------------------------------
    async def tokens(self) -> list[str]:
        return await self._read(("tokens",), lambda: self._r.zrange(self.k("pool"), 0, -1))

    async def add_tokens(self, lines: Sequence[str]) -> list[str]:
        args: list[str] = []
        for line in dict.fromkeys(normalise_line(x) for x in lines):
            if line:
                args += [line, token_id(line)]
        if not args:
            return []
        keys = [self.k("pool"), self.k("seq"), self.k("ids")]
        return list(await self._write(lambda: self._add_ordered(keys=keys, args=args)))

    async def remove_tokens(self, lines: Collection[str]) -> int:
        gone = [x for x in {normalise_line(x) for x in lines} if x]
        if not gone:
            return 0
        ids = [token_id(x) for x in gone]

        async def call() -> int:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.zrem(self.k("pool"), *gone)
                for name in ("ids", "health", "used", "lasterr"):
                    pipe.hdel(self.k(name), *ids)
                return int((await pipe.execute())[0])

        return await self._write(call)

    async def replace_token(self, old: str, new: str) -> int:
        async def call() -> int:
            pool, ids, health = self.k("pool"), self.k("ids"), self.k("health")
            async with self._r.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(pool, health)
                        lines = await pipe.zrange(pool, 0, -1, withscores=True)
                        moves = []
                        for line, score in lines:
                            token, sep, account = line.partition(",")
                            if token == old:
                                moves.append((line, new + sep + account, score))
                        if not moves:
                            await pipe.unwatch()
                            return 0
                        records = [await pipe.hget(health, token_id(m[0])) for m in moves]
                        pipe.multi()
                        for (line, fresh, score), record in zip(moves, records, strict=True):
                            pipe.zrem(pool, line)
                            pipe.zadd(pool, {fresh: score}, nx=True)
                            pipe.hdel(ids, token_id(line))
                            pipe.hset(ids, token_id(fresh), fresh)
                            pipe.hdel(health, token_id(line))
                            if record is not None:
                                pipe.hset(health, token_id(fresh), record)
                        await pipe.execute()
                        return len(moves)
                    except WatchError:
                        continue

        return await self._write(call)

    async def clear_tokens(self) -> None:
        names = ("pool", "ids", "health", "used", "lasterr")
        await self._write(lambda: self._r.delete(*(self.k(n) for n in names)))

    # -- error list ---------------------------------------------------------------------
    async def errors(self) -> list[str]:
        return await self._read(("errors",), lambda: self._r.zrange(self.k("errors"), 0, -1))

    async def add_error(self, token: str) -> bool:
        keys = [self.k("errors"), self.k("seq")]
        added = await self._write(lambda: self._add_ordered(keys=keys, args=[token, ""]))
        return bool(added)

    async def clear_errors(self) -> None:
        await self._write(lambda: self._r.delete(self.k("errors")))

    # -- health -------------------------------------------------------------------------
    async def health(self) -> dict[str, Health]:
        async def call() -> dict[str, Health]:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hgetall(self.k("health"))
                pipe.hgetall(self.k("used"))
                pipe.hgetall(self.k("lasterr"))
                records, used, lasterr = await pipe.execute()
            out = {k: Health.from_dict(_json(v)) for k, v in records.items()}
            for entry_id, when in used.items():
                h = out.get(entry_id, Health()).with_(last_used=float(when))
                if entry_id in lasterr:
                    h = h.with_(last_error=lasterr[entry_id])
                out[entry_id] = h
            return out

        return await self._read(("health",), call)

    async def set_health(self, entry_id: str, health: Health) -> None:
        keys = [self.k("ids"), self.k("health"), self.k("used"), self.k("lasterr")]
        args = [entry_id, json.dumps(health.to_dict())]
        await self._write(lambda: self._set_health(keys=keys, args=args))

    async def touch(self, entry_id: str, when: float, error: str | None = None) -> None:
        keys = [self.k("ids"), self.k("used"), self.k("lasterr")]
        args = [entry_id, repr(when), error or ""]
        with contextlib.suppress(_Unreachable):  # best effort
            await self._run(lambda: self._touch(keys=keys, args=args))

    # -- refresh cache --------------------------------------------------------------------
    async def cached_access(self, refresh_token: str) -> CachedAccess | None:
        raw = await self._read(
            ("refresh", refresh_token), lambda: self._r.hget(self.k("refresh"), refresh_token)
        )
        return None if raw is None else CachedAccess.from_dict(_json(raw))

    async def put_access(
        self, refresh_token: str, cached: CachedAccess, *, rotated_from: str | None = None
    ) -> None:
        values = {refresh_token: json.dumps(cached.to_dict())}
        if rotated_from is not None:
            alias = CachedAccess(token=None, timestamp=cached.timestamp, rotated_to=refresh_token)
            values[rotated_from] = json.dumps(alias.to_dict())
        await self._write(lambda: self._r.hset(self.k("refresh"), mapping=values))
        if rotated_from is not None:
            with contextlib.suppress(_Unreachable):  # housekeeping: old aliases
                await self._run(self._drop_old_aliases)

    async def _drop_old_aliases(self) -> None:
        horizon = self._clock() - _ALIAS_SECONDS
        entries = await self._r.hgetall(self.k("refresh"))
        old = []
        for key, raw in entries.items():
            data = _json(raw)
            if "rotated_to" in data and float(data.get("timestamp") or 0) < horizon:
                old.append(key)
        if old:
            await self._r.hdel(self.k("refresh"), *old)

    # -- rate-limit memory (best effort) ----------------------------------------------------
    async def limits(self, model: str) -> dict[str, float]:
        now = self._clock()
        mine = self._limits.setdefault(model, {})
        for key in [k for k, until in mine.items() if until <= now]:
            del mine[key]
        try:
            shared = await self._run(lambda: self._r.hgetall(self.k("limits", model)))
        except _Unreachable:
            return dict(mine)
        out = {k: float(v) for k, v in shared.items()}
        expired = [k for k, until in out.items() if until <= now]
        if expired:
            with contextlib.suppress(_Unreachable):
                await self._run(lambda: self._r.hdel(self.k("limits", model), *expired))
        for key, until in mine.items():
            out[key] = max(until, out.get(key, 0.0))
        return {k: v for k, v in out.items() if v > now}

    async def set_limit(self, model: str, entry_id: str, until: float) -> None:
        self._limits.setdefault(model, {})[entry_id] = until
        with contextlib.suppress(_Unreachable):
            await self._run(lambda: self._r.hset(self.k("limits", model), entry_id, repr(until)))

    # -- mirror seeds and conversation ownership -----------------------------------------
    async def seeds(self) -> dict[str, SeedRecord]:
        raw = await self._read(("seeds",), lambda: self._r.hgetall(self.k("seeds")))
        return {k: SeedRecord.from_dict(_json(v)) for k, v in raw.items()}

    async def seed(self, key: str) -> SeedRecord | None:
        raw = await self._read(("seed", key), lambda: self._r.hget(self.k("seeds"), key))
        return None if raw is None else SeedRecord.from_dict(_json(raw))

    async def put_seed(self, key: str, record: SeedRecord) -> None:
        value = json.dumps(record.to_dict())
        await self._write(lambda: self._r.hset(self.k("seeds"), key, value))

    async def remove_seed(self, key: str) -> bool:
        return bool(await self._write(lambda: self._r.hdel(self.k("seeds"), key)))

    async def own_conversation(self, conversation_id: str, owner: str) -> bool:
        keys = [self.k("owner"), self.k("owned", owner)]
        args = [conversation_id, owner, repr(self._clock())]
        return bool(await self._write(lambda: self._own(keys=keys, args=args)))

    async def conversation_owner(self, conversation_id: str) -> str | None:
        return await self._read(
            ("owner", conversation_id),
            lambda: self._r.hget(self.k("owner"), conversation_id),
        )

    async def owned_conversations(self, owner: str) -> list[str]:
        return await self._read(
            ("owned", owner), lambda: self._r.zrange(self.k("owned", owner), 0, -1, desc=True)
        )

    # -- coordination ---------------------------------------------------------------------
    async def next_counter(self, name: str) -> int:
        try:
            value = int(await self._run(lambda: self._r.incr(self.k("counter", name)))) - 1
        except _Unreachable:
            value = self._counters.get(name, 0)  # round robin goes on locally
        self._counters[name] = value + 1
        return value

    @contextlib.asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        """In-process waiters queue on a local lock; one of them at a time holds the
        Redis lock (``SET NX PX lock_ttl``), polling while another instance has it.
        A holder that dies frees it after ``lock_ttl``."""
        local, users = self._locks.get(name, (asyncio.Lock(), 0))
        self._locks[name] = (local, users + 1)
        try:
            async with local:
                key, token = self.k("lock", name), secrets.token_hex(16)
                ttl = int(self.lock_ttl * 1000)
                deadline = time.monotonic() + self.lock_ttl + 5
                while not await self._write(lambda: self._r.set(key, token, nx=True, px=ttl)):
                    if time.monotonic() > deadline:
                        raise UpstreamUnavailable(f"Timed out waiting for the shared lock {name}.")
                    await asyncio.sleep(0.025)
                try:
                    yield
                finally:
                    with contextlib.suppress(_Unreachable):  # else it expires by itself
                        await self._run(lambda: self._unlock(keys=[key], args=[token]))
        finally:
            local, users = self._locks[name]
            if users == 1:
                del self._locks[name]
            else:
                self._locks[name] = (local, users - 1)

    # -- copying ----------------------------------------------------------------------------
    async def export_state(self) -> Snapshot:
        async def call() -> Snapshot:
            r = self._r
            async with r.pipeline(transaction=True) as pipe:
                pipe.zrange(self.k("pool"), 0, -1)
                pipe.zrange(self.k("errors"), 0, -1)
                pipe.hgetall(self.k("refresh"))
                pipe.hgetall(self.k("seeds"))
                pipe.hgetall(self.k("owner"))
                tokens, errors, refresh, seeds, owner = await pipe.execute()
            async with r.pipeline(transaction=False) as pipe:
                for cid, who in owner.items():
                    pipe.zscore(self.k("owned", who), cid)
                created = await pipe.execute() if owner else []
            return Snapshot(
                tokens=tokens,
                errors=errors,
                refresh={k: CachedAccess.from_dict(_json(v)) for k, v in refresh.items()},
                seeds={k: SeedRecord.from_dict(_json(v)) for k, v in seeds.items()},
                owners={
                    cid: (who, float(when or 0.0))
                    for (cid, who), when in zip(owner.items(), created, strict=True)
                },
            )

        snapshot = await self._write(call)
        ids = {token_id(line) for line in snapshot.tokens}
        snapshot.health = {k: v for k, v in (await self.health()).items() if k in ids}
        return snapshot

    async def import_state(self, snapshot: Snapshot) -> None:
        await self.add_tokens(snapshot.tokens)
        for token in snapshot.errors:
            await self.add_error(token)

        async def call() -> None:
            pool_ids = set(await self._r.hkeys(self.k("ids")))
            async with self._r.pipeline(transaction=True) as pipe:
                for entry_id, h in snapshot.health.items():
                    if entry_id in pool_ids:
                        pipe.hset(self.k("health"), entry_id, json.dumps(h.to_dict()))
                if snapshot.refresh:
                    values = {k: json.dumps(v.to_dict()) for k, v in snapshot.refresh.items()}
                    pipe.hset(self.k("refresh"), mapping=values)
                if snapshot.seeds:
                    values = {k: json.dumps(v.to_dict()) for k, v in snapshot.seeds.items()}
                    pipe.hset(self.k("seeds"), mapping=values)
                await pipe.execute()
            for cid, (owner, created) in snapshot.owners.items():
                keys = [self.k("owner"), self.k("owned", owner)]
                await self._own(keys=keys, args=[cid, owner, repr(created)])

        await self._write(call)


def _json(raw: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
