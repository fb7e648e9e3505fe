"""Stored responses, for ``previous_response_id`` and ``GET``/``DELETE /v1/responses/{id}``.

A stored response keeps what a follow-up needs: the whole input that led to it
(its own previous history included) and its output items, plus the ``Response``
object ``GET`` returns, and the hash of the key that made it (only that key may
read or delete it; see :func:`owner_of`). Records expire after
``RESPONSES_TTL`` seconds.

Two stores, as for the accounts (``accounts/filestore.py``,
``accounts/redisstore.py``): one JSON file per response under
``DATA_DIR/responses/`` (written atomically, expired ones swept lazily), or
Redis keys ``<prefix>:response:<id>`` with a TTL when ``REDIS_URL`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from accounts.filestore import atomic_write
from errors import UpstreamUnavailable

log = logging.getLogger(__name__)

_ID = re.compile(r"resp_[A-Za-z0-9]{8,64}")


def owner_of(bearer: str | None) -> str:
    """The owner tag of a request's key: a digest, never the key itself."""
    return hashlib.sha256(b"chat2api-response\0" + (bearer or "").encode()).hexdigest()


def valid_id(response_id: str) -> bool:
    return _ID.fullmatch(response_id) is not None


@dataclass(frozen=True, kw_only=True)
class StoredResponse:
    id: str
    owner: str
    created: float
    input: list[dict[str, Any]]
    output: list[dict[str, Any]]
    response: dict[str, Any]
    #: The prompt cache key the conversation goes on with (prompt-cache affinity).
    cache_key: str | None = None

    def owned_by(self, owner: str) -> bool:
        return hmac.compare_digest(self.owner.encode(), owner.encode())

    def history(self) -> list[dict[str, Any]]:
        """What a follow-up's input continues from."""
        return [*self.input, *self.output]

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "owner": self.owner,
                "created": self.created,
                "input": self.input,
                "output": self.output,
                "response": self.response,
                "cache_key": self.cache_key,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> StoredResponse | None:
        try:
            data = json.loads(raw)
            return cls(
                id=str(data["id"]),
                owner=str(data["owner"]),
                created=float(data["created"]),
                input=list(data["input"]),
                output=list(data["output"]),
                response=dict(data["response"]),
                cache_key=data.get("cache_key"),
            )
        except (ValueError, KeyError, TypeError):
            return None


class ResponseStore(Protocol):
    async def get(self, response_id: str) -> StoredResponse | None: ...

    async def put(self, record: StoredResponse) -> None: ...

    async def delete(self, response_id: str) -> bool: ...

    async def close(self) -> None: ...


class FileResponseStore:
    """One file per response under ``directory``; see the module docstring."""

    def __init__(self, directory: Path, *, ttl: float, clock: Any = time.time) -> None:
        self.directory = directory
        self.ttl = ttl
        self.clock = clock
        self._last_sweep = 0.0

    def _path(self, response_id: str) -> Path:
        return self.directory / f"{response_id}.json"

    async def get(self, response_id: str) -> StoredResponse | None:
        if not valid_id(response_id):
            return None
        path = self._path(response_id)
        try:
            raw = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise UpstreamUnavailable(f"cannot read the stored response: {e.strerror}") from None
        record = StoredResponse.from_json(raw)
        if record is None or record.created + self.ttl <= self.clock():
            return None
        return record

    async def put(self, record: StoredResponse) -> None:
        data = record.to_json()

        def write() -> None:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(self._path(record.id), data)

        try:
            await asyncio.to_thread(write)
        except OSError as e:
            raise UpstreamUnavailable(f"cannot store the response: {e.strerror}") from None
        now = self.clock()
        if now - self._last_sweep > min(self.ttl, 3600.0):
            self._last_sweep = now
            await asyncio.to_thread(self._sweep, now)

    def _sweep(self, now: float) -> None:
        """Remove expired records (by file time: cheaper than reading each)."""
        for path in self.directory.glob("resp_*.json"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime + self.ttl <= now:
                    path.unlink()

    async def delete(self, response_id: str) -> bool:
        if not valid_id(response_id):
            return False
        try:
            await asyncio.to_thread(self._path(response_id).unlink)
        except FileNotFoundError:
            return False
        except OSError as e:
            raise UpstreamUnavailable(f"cannot delete the stored response: {e.strerror}") from None
        return True

    async def close(self) -> None:
        return None


class RedisResponseStore:
    """``<prefix>:response:<id>`` keys with a TTL."""

    def __init__(self, url: str, *, prefix: str, ttl: float, client: Any = None) -> None:
        import redis.asyncio as aioredis

        self.prefix = prefix
        self.ttl = ttl
        self._r: Any = client or aioredis.Redis.from_url(
            url, socket_timeout=1.5, socket_connect_timeout=1.5, health_check_interval=0
        )

    def _key(self, response_id: str) -> str:
        return f"{self.prefix}:response:{response_id}"

    async def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await getattr(self._r, method)(*args, **kwargs)
        except (RedisError, OSError) as e:
            raise UpstreamUnavailable(
                f"shared state (Redis) is unreachable: cannot {what} ({type(e).__name__})"
            ) from None

    async def get(self, response_id: str) -> StoredResponse | None:
        if not valid_id(response_id):
            return None
        raw = await self._call("read the stored response", "get", self._key(response_id))
        return StoredResponse.from_json(raw) if raw else None

    async def put(self, record: StoredResponse) -> None:
        await self._call(
            "store the response",
            "set",
            self._key(record.id),
            record.to_json(),
            ex=max(1, int(self.ttl)),
        )

    async def delete(self, response_id: str) -> bool:
        if not valid_id(response_id):
            return False
        return bool(await self._call("delete the response", "delete", self._key(response_id)))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._r.aclose()
