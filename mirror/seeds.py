"""Who a mirror user is: a seed on a pool account, or their own ChatGPT token.

A login value (the ``token`` cookie or a bearer) is, in this order
(docs/mirror.md#login-values-and-seeds):

1. a **known seed** (looked up by :func:`accounts.store.seed_key`);
2. an **access token** (a JWT with ``exp``) or a **refresh token** (``rt_…`` or the
   old 45-character form), optionally ``,account_id``: the user's own account,
   used directly and not restricted;
3. otherwise a **new seed**: with ``auto_seed`` it gets a random healthy pool account
   at once and keeps it (the original failed this first request);
   without it, only seeds made through the admin API work.

Sign-ups are limited (issue 14): new seeds and sign-in refreshes per client address
and hour (:class:`mirror.limits.PerAddress`), and ``auto_seed_limit`` caps how many
seeds may exist before ``auto_seed`` stops making new ones (admin seeds still work).

A seed whose account disappears from the pool or turns bad gets another one with
``auto_seed`` (else 503). Conversation ownership (docs/mirror.md#ownership) is kept per seed key;
ids seen in a stream count at once (:meth:`Seeds.note`), before the store write ends.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from accounts.pool import Credential, Pool
from accounts.store import SeedRecord, State, Store, seed_key
from accounts.tokens import InvalidToken, TokenKind, parse_line, token_id
from errors import AuthenticationFailed, Chat2ApiError
from mirror.limits import PerAddress

log = logging.getLogger(__name__)

MIN_SEED_LENGTH = 8
MAX_SEED_LENGTH = 512
_LEGACY_REFRESH_LENGTH = 45


class Kind(enum.Enum):
    SEED = "seed"
    DIRECT = "direct"


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class Identity:
    kind: Kind
    credential: Credential
    key: str | None = None  # the seed key (seeds only)

    @property
    def restricted(self) -> bool:
        return self.kind is Kind.SEED

    def __repr__(self) -> str:
        who = f"seed {self.key[:12]}" if self.key else "direct"
        return f"Identity({who}, {self.credential!r})"


class LoginFailed(Exception):
    """The login value is not usable; ``status`` is 401, 403 (no new seeds), 429
    (``retry_after`` seconds) or 503; the message is safe to show."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def _limited(wait: float | None, what: str) -> None:
    if wait is not None:
        raise LoginFailed(429, f"Too many {what} from your address; try again later.", wait)


def own_token(value: str) -> str | None:
    """The normalised line if ``value`` is the user's own AT or RT, else None."""
    try:
        entry = parse_line(value)
    except InvalidToken:
        return None
    if entry.kind is TokenKind.REFRESH:
        token = entry.token
        if not (token.startswith("rt_") or len(token) == _LEGACY_REFRESH_LENGTH):
            return None  # an opaque string is a seed unless it has a refresh token's form
    return entry.line


def check_seed(seed: str) -> None:
    if not MIN_SEED_LENGTH <= len(seed) <= MAX_SEED_LENGTH:
        raise LoginFailed(401, f"A seed has {MIN_SEED_LENGTH} to {MAX_SEED_LENGTH} characters.")
    if any(c.isspace() or not c.isprintable() for c in seed):
        raise LoginFailed(401, "A seed has no spaces or control characters.")


class Seeds:
    def __init__(
        self,
        store: Store,
        pool: Pool,
        *,
        auto_seed: bool,
        auto_seed_limit: int = 0,
        new_seeds: PerAddress | None = None,
        refreshes: PerAddress | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.pool = pool
        self.auto_seed = auto_seed
        self.auto_seed_limit = auto_seed_limit  # 0: no cap
        self.new_seeds = new_seeds or PerAddress(0)
        self.refreshes = refreshes or PerAddress(0)
        self.rng = rng or random.SystemRandom()
        self.clock = clock
        self._pending: dict[str, str] = {}  # conversation id → owner, until stored
        self._tasks: set[asyncio.Task[None]] = set()

    # -- identities ----------------------------------------------------------------
    async def resolve(self, value: str, client: str = "") -> Identity:
        """The identity behind a login value, for a request from address ``client``;
        raises LoginFailed."""
        value = value.strip()
        if not value:
            raise LoginFailed(401, "Sign in first.")
        if len(value) <= MAX_SEED_LENGTH:
            key = seed_key(value)
            record = await self.store.seed(key)
            if record is not None:
                return await self._seed_identity(key, record)
        line = own_token(value)
        if line is not None:
            if await self._will_refresh(line):
                _limited(self.refreshes.take(client), "sign-ins with refresh tokens")
            return Identity(kind=Kind.DIRECT, credential=await self._direct(line))
        check_seed(value)
        key = seed_key(value)
        async with self.store.lock("seed:" + key[:16]):
            record = await self.store.seed(key)  # another request may have made it meanwhile
            if record is None:
                record = await self._new_seed(key, client)
        return await self._seed_identity(key, record)

    async def _new_seed(self, key: str, client: str) -> SeedRecord:
        if not self.auto_seed:
            raise LoginFailed(401, "Unknown seed.")
        async with self.store.lock("seeds:new"):  # the cap holds for concurrent sign-ups
            if self.auto_seed_limit and len(await self.store.seeds()) >= self.auto_seed_limit:
                log.warning("auto_seed_limit (%d) reached: new seed refused", self.auto_seed_limit)
                raise LoginFailed(403, "This mirror takes no new seeds; ask its operator for one.")
            entry_id = await self.pick_entry()  # before counting: no account, no seed
            _limited(self.new_seeds.take(client), "new seeds")
            record = SeedRecord(entry_id=entry_id, created=self.clock())
            await self.store.put_seed(key, record)
        log.info("new seed %s on pool entry %s", key[:12], record.entry_id)
        return record

    async def _will_refresh(self, line: str) -> bool:
        """Whether resolving this own-token line calls the token endpoint now."""
        refresher = self.pool.refresher
        try:
            entry = parse_line(line)
        except InvalidToken:
            return False
        if entry.kind is not TokenKind.REFRESH or refresher is None:
            return False
        return await refresher.needs_refresh(entry.token)

    async def _direct(self, line: str) -> Credential:
        try:
            return await self.pool.resolve(line)
        except AuthenticationFailed as e:
            raise LoginFailed(401, str(e)) from None
        except Chat2ApiError as e:
            raise LoginFailed(503, str(e)) from None

    async def pick_entry(self) -> str:
        """A random healthy pool entry's id; LoginFailed(503) if there is none."""
        healthy = [v.id for v in await self.pool.views() if v.state == State.HEALTHY.value]
        if not healthy:
            raise LoginFailed(503, "No pool account is available for seeds right now.")
        return self.rng.choice(healthy)

    async def _line(self, entry_id: str) -> str | None:
        health = (await self.store.health()).get(entry_id)
        if health is not None and health.effective(self.clock()) is State.BAD:
            return None
        for line in await self.store.tokens():
            if token_id(line) == entry_id:
                return line
        return None

    async def _seed_identity(self, key: str, record: SeedRecord) -> Identity:
        if record.token is not None:
            cred = await self._direct(record.token)
            return Identity(kind=Kind.SEED, credential=cred, key=key)
        for _ in range(3):
            line = await self._line(record.entry_id) if record.entry_id else None
            if line is not None:
                try:
                    cred = await self.pool.resolve(line)
                    return Identity(kind=Kind.SEED, credential=cred, key=key)
                except Chat2ApiError as e:
                    log.warning("seed %s: its pool entry failed: %s", key[:12], e)
            if not self.auto_seed:
                raise LoginFailed(503, "This seed's account is not available right now.")
            record = SeedRecord(entry_id=await self.pick_entry(), created=record.created)
            await self.store.put_seed(key, record)
            log.info("seed %s moved to pool entry %s", key[:12], record.entry_id)
        raise LoginFailed(503, "No pool account is available for seeds right now.")

    # -- conversation ownership ------------------------------------------------------
    def note(self, owner: str, conversation_id: str) -> None:
        """Record ownership now (for checks) and durably in the background."""
        cid = conversation_id.lower()
        self._pending.setdefault(cid, owner)
        task = asyncio.get_running_loop().create_task(self._store_owner(owner, cid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store_owner(self, owner: str, cid: str) -> None:
        try:
            if not await self.store.own_conversation(cid, owner):
                log.warning("conversation %s is owned by another seed already", cid)
        except Exception:
            log.exception("could not record the owner of conversation %s", cid)
        finally:
            if self._pending.get(cid) == owner:
                del self._pending[cid]

    async def owns(self, owner: str, conversation_id: str) -> bool:
        cid = conversation_id.lower()
        stored = await self.store.conversation_owner(cid)
        if stored is not None:
            return stored == owner
        return self._pending.get(cid) == owner

    async def owned(self, owner: str) -> list[str]:
        ids = await self.store.owned_conversations(owner)
        pending = [cid for cid, who in self._pending.items() if who == owner and cid not in ids]
        return pending + ids

    async def drain(self) -> None:
        """Wait for the background ownership writes (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
