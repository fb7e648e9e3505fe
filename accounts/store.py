"""The storage interface behind the pool, the refresher and the admin API.

All account state goes through :class:`Store`: :class:`accounts.filestore.FileStore`
(files under ``DATA_DIR``, one instance) or :class:`accounts.redisstore.RedisStore`
(``REDIS_URL``, several instances sharing one pool), without touching the pool
logic. Every method is async; a method returns only once its change is durable
(for the file store: written, fsynced and renamed into place; for Redis:
acknowledged by the server), except :meth:`Store.touch` and the rate-limit
memory, which are best effort. A store that cannot write raises
:class:`errors.UpstreamUnavailable` (503) instead of losing a change.

State kept here:

* the pool: entry lines (``token`` or ``token,account_id``, normalised with
  :func:`accounts.tokens.normalise_line`) in a stable insertion order;
* the error list: dead refresh tokens (docs/original-behaviour.md#accounts);
* health per entry id (:func:`accounts.tokens.token_id` of the line);
* the refresh cache: refresh token → access token, with rotation aliases;
* the rate-limit memory: (model slug, entry id) → until (docs/original-behaviour.md#accounts);
* round-robin counters per AUTHORIZATION code, and named locks (the refresh
  lock; across instances for a shared store);
* the mirror's seeds: seed key → :class:`SeedRecord` (a pool entry id or a
  direct credential), and conversation ownership: conversation id → seed key.
  Seed keys are :func:`seed_key` digests, so the seeds themselves are never
  stored.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

#: The original's refresh-cache lifetime (docs/original-behaviour.md#accounts), used when an access
#: token carries no readable ``exp``.
LEGACY_CACHE_SECONDS = 5 * 24 * 3600.0


class State(enum.Enum):
    HEALTHY = "healthy"
    COOLING = "cooling"
    BAD = "bad"


@dataclass(frozen=True, kw_only=True, slots=True)
class Health:
    """The visible health of one pool entry.

    ``unauth_at`` is the id of the access token that a 401 made us refresh to:
    a second 401 with that very token marks the entry bad (refresh once).
    """

    state: State = State.HEALTHY
    until: float | None = None
    reason: str | None = None
    last_error: str | None = None
    last_used: float | None = None
    unauth_at: str | None = None

    def effective(self, now: float) -> State:
        """The state at ``now``: a cooldown that has run out is healthy again."""
        if self.state is State.COOLING and (self.until is None or self.until <= now):
            return State.HEALTHY
        return self.state

    def with_(self, **changes: Any) -> Health:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "until": self.until,
            "reason": self.reason,
            "last_error": self.last_error,
            "last_used": self.last_used,
            "unauth_at": self.unauth_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Health:
        def num(key: str) -> float | None:
            value = data.get(key)
            return float(value) if isinstance(value, (int, float)) else None

        def text(key: str) -> str | None:
            value = data.get(key)
            return value if isinstance(value, str) else None

        try:
            state = State(data.get("state", "healthy"))
        except ValueError:
            state = State.HEALTHY
        return cls(
            state=state,
            until=num("until"),
            reason=text("reason"),
            last_error=text("last_error"),
            last_used=num("last_used"),
            unauth_at=text("unauth_at"),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class CachedAccess:
    """A refresh-cache entry: an access token, or an alias to the rotated refresh token."""

    token: str | None
    timestamp: float
    expires: float | None = None
    rotated_to: str | None = None

    def valid(self, now: float, margin: float) -> bool:
        if self.token is None:
            return False
        expires = (
            self.expires if self.expires is not None else self.timestamp + LEGACY_CACHE_SECONDS
        )
        return expires - margin > now

    def to_dict(self) -> dict[str, Any]:
        """The ``refresh_map.json`` form: ``{"token", "timestamp"[, "expires"]}`` or,
        for a rotation alias, ``{"rotated_to", "timestamp"}``."""
        if self.rotated_to is not None:
            return {"rotated_to": self.rotated_to, "timestamp": int(self.timestamp)}
        entry: dict[str, Any] = {"token": self.token, "timestamp": int(self.timestamp)}
        if self.expires is not None:
            entry["expires"] = self.expires
        return entry

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CachedAccess:
        token, ts, exp, rot = (raw.get(k) for k in ("token", "timestamp", "expires", "rotated_to"))
        return cls(
            token=token if isinstance(token, str) else None,
            timestamp=float(ts) if isinstance(ts, (int, float)) else 0.0,
            expires=float(exp) if isinstance(exp, (int, float)) else None,
            rotated_to=rot if isinstance(rot, str) else None,
        )


def seed_key(seed: str) -> str:
    """The storage key of a mirror seed: a SHA-256 digest, never the seed itself."""
    return hashlib.sha256(b"chat2api-seed\0" + seed.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class SeedRecord:
    """What a mirror seed maps to: a pool entry (by id) or a direct credential line."""

    entry_id: str | None = None
    token: str | None = None
    created: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"entry_id": self.entry_id, "token": self.token, "created": self.created}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeedRecord:
        entry_id, token, created = data.get("entry_id"), data.get("token"), data.get("created")
        return cls(
            entry_id=entry_id if isinstance(entry_id, str) else None,
            token=token if isinstance(token, str) else None,
            created=float(created) if isinstance(created, (int, float)) else 0.0,
        )


@dataclass(kw_only=True, slots=True)
class Snapshot:
    """All durable account state, for copying it between stores (``accounts.migrate``).

    The rate-limit memory, counters and locks are not part of it.
    """

    tokens: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    health: dict[str, Health] = field(default_factory=dict)
    refresh: dict[str, CachedAccess] = field(default_factory=dict)
    seeds: dict[str, SeedRecord] = field(default_factory=dict)
    # conversation id → (owner seed key, created)
    owners: dict[str, tuple[str, float]] = field(default_factory=dict)


class Store(Protocol):
    """Async storage for all account state. See the module docstring."""

    async def open(self) -> None:
        """Load (or create) the state; called once before anything else."""

    async def close(self) -> None:
        """Flush best-effort state and release resources."""

    # -- pool ---------------------------------------------------------------
    async def tokens(self) -> list[str]:
        """The entry lines in stable insertion order (no comments, no blanks)."""
        ...

    async def add_tokens(self, lines: Sequence[str]) -> list[str]:
        """Append the lines not present yet (atomically); return those added."""
        ...

    async def remove_tokens(self, lines: Collection[str]) -> int:
        """Remove these lines and their health; return how many were removed."""
        ...

    async def replace_token(self, old: str, new: str) -> int:
        """Replace the token part ``old`` by ``new`` in every line (keeping account
        suffixes and order) and move their health; return the lines changed."""
        ...

    async def clear_tokens(self) -> None:
        """Empty the pool and all health."""

    # -- error list ---------------------------------------------------------
    async def errors(self) -> list[str]:
        """The dead tokens, oldest first."""
        ...

    async def add_error(self, token: str) -> bool:
        """Add a dead token; False if it was listed already."""
        ...

    async def clear_errors(self) -> None: ...

    # -- health ---------------------------------------------------------------
    async def health(self) -> dict[str, Health]:
        """Health by entry id (entries without a record are healthy)."""
        ...

    async def set_health(self, entry_id: str, health: Health) -> None:
        """Store one entry's health durably; ignored for ids not in the pool."""

    async def touch(self, entry_id: str, when: float, error: str | None = None) -> None:
        """Best effort: note last use (and a last error) without a durable write."""

    # -- refresh cache ----------------------------------------------------
    async def cached_access(self, refresh_token: str) -> CachedAccess | None: ...

    async def put_access(
        self, refresh_token: str, cached: CachedAccess, *, rotated_from: str | None = None
    ) -> None:
        """Cache an access token; with ``rotated_from``, also alias the old refresh
        token to this one, in the same durable write."""

    # -- rate-limit memory ------------------------------------------------
    async def limits(self, model: str) -> dict[str, float]:
        """Entry id → until (Unix time) for this model slug; expired ones dropped."""
        ...

    async def set_limit(self, model: str, entry_id: str, until: float) -> None: ...

    # -- mirror seeds and conversation ownership ----------------------------
    async def seeds(self) -> dict[str, SeedRecord]:
        """Every seed record by seed key (:func:`seed_key`)."""
        ...

    async def seed(self, key: str) -> SeedRecord | None: ...

    async def put_seed(self, key: str, record: SeedRecord) -> None:
        """Create or replace a seed record durably."""

    async def remove_seed(self, key: str) -> bool:
        """Forget a seed (its conversations stay owned by its key); False if unknown."""
        ...

    async def own_conversation(self, conversation_id: str, owner: str) -> bool:
        """Record ``owner`` (a seed key) for a conversation unless another owns it
        already; True when ``owner`` owns it afterwards."""
        ...

    async def conversation_owner(self, conversation_id: str) -> str | None: ...

    async def owned_conversations(self, owner: str) -> list[str]:
        """The conversation ids ``owner`` owns, newest first."""
        ...

    # -- coordination -----------------------------------------------------
    async def next_counter(self, name: str) -> int:
        """An atomic counter: 0, 1, 2, … per name."""
        ...

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        """A named mutual-exclusion lock (across instances for a shared store)."""
        ...

    # -- copying ------------------------------------------------------------
    async def export_state(self) -> Snapshot:
        """Everything durable, for :meth:`import_state` into another store."""
        ...

    async def import_state(self, snapshot: Snapshot) -> None:
        """Merge a snapshot in: pool and error entries are added (order kept), and
        health, refresh-cache entries, seeds and owners replace those with the same
        key (an owned conversation keeps its owner)."""
