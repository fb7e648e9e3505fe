"""The file implementation of :class:`accounts.store.Store`, under ``DATA_DIR``.

Files (compatible with an original chat2api ``data/`` folder, docs/original-behaviour.md#accounts):

* ``token.txt``: one ``token`` or ``token,account_id`` per line, ``#`` comments.
  Comment and unparsable lines are kept as they are when the file is rewritten.
* ``error_token.txt``: one dead token per line.
* ``refresh_map.json``: ``{RT: {"token": AT, "timestamp": unix}}`` as in the
  original, plus ``"expires"`` and rotation aliases ``{"rotated_to": RT2}``.
* ``health.json``: ``{entry_id: {"state", "until", "reason", ...}}``.
* ``seeds.json``: ``{seed_key: {"entry_id", "token", "created"}}`` (the mirror's
  seeds, keyed by digest; the original's ``seed_map.json`` kept the seeds).
* ``conversations.json``: ``{conversation_id: {"owner": seed_key, "created"}}``.

Every write is atomic (a temporary file in the same directory, fsync, rename,
fsync of the directory) and runs in a worker thread, one writer per file at a
time; a call returns only after its data is durable, so a crash at any moment
loses nothing already acknowledged. Concurrent changes share one write (group
commit). The state lives in memory, so reads never touch the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from accounts.store import CachedAccess, Health, SeedRecord, Snapshot
from accounts.tokens import normalise_line, token_id

log = logging.getLogger(__name__)

TOKENS = "token.txt"
ERRORS = "error_token.txt"
REFRESH = "refresh_map.json"
HEALTH = "health.json"
SEEDS = "seeds.json"
CONVERSATIONS = "conversations.json"
_ALIAS_SECONDS = 30 * 24 * 3600.0


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that a crash leaves the old or the new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class _Writer:
    """One file's writer: serialised, off the event loop, with group commit."""

    def __init__(self, path: Path, render: Callable[[], bytes]) -> None:
        self.path = path
        self._render = render
        self._lock = asyncio.Lock()
        self._changes = 0
        self._written = 0

    async def commit(self) -> None:
        """Call right after changing the state (no await in between)."""
        self._changes += 1
        mine = self._changes
        async with self._lock:
            if self._written >= mine:
                return  # a write that started after our change already covered it
            target = self._changes
            await asyncio.to_thread(atomic_write, self.path, self._render())
            self._written = target


def _is_entry(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _created(info: dict[str, Any]) -> float:
    value = info.get("created")
    return float(value) if isinstance(value, (int, float)) else 0.0


def _private_dir(path: Path) -> None:
    """Create ``path`` readable by its owner only (its files hold tokens); an
    existing one is left as it is, with a warning if others may read it."""
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning(
                "DATA_DIR %s is readable by other users (mode %o); chmod 700 it", path, mode
            )
        return
    path.chmod(0o700)  # (mkdir's mode is filtered by the umask; this is not)


class FileStore:
    """Account state in files under ``data_dir``; see the module docstring."""

    def __init__(self, data_dir: str | os.PathLike[str], *, clock: Callable[[], float] = time.time):
        self.dir = Path(data_dir)
        self._clock = clock
        self._raw: list[str] = []  # token.txt lines as read, comments included
        self._lines: list[str] = []  # normalised entry lines, first occurrence only
        self._errors: list[str] = []
        self._health: dict[str, Health] = {}
        self._refresh: dict[str, dict[str, Any]] = {}
        self._limits: dict[str, dict[str, float]] = {}
        self._counters: dict[str, int] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._ids: dict[str, str] = {}
        self._seeds: dict[str, SeedRecord] = {}
        self._owners: dict[str, dict[str, Any]] = {}
        self._owned: dict[str, list[str]] = {}  # owner → ids, oldest first (an index)
        self._w_tokens = _Writer(self.dir / TOKENS, self._render_tokens)
        self._w_errors = _Writer(self.dir / ERRORS, self._render_errors)
        self._w_refresh = _Writer(self.dir / REFRESH, self._render_refresh)
        self._w_health = _Writer(self.dir / HEALTH, self._render_health)
        self._w_seeds = _Writer(self.dir / SEEDS, self._render_seeds)
        self._w_owners = _Writer(self.dir / CONVERSATIONS, self._render_owners)

    # -- loading --------------------------------------------------------------
    async def open(self) -> None:
        files = await asyncio.to_thread(self._read_all)
        self._raw = files[TOKENS].splitlines()
        self._errors = list(
            dict.fromkeys(normalise_line(x) for x in files[ERRORS].splitlines() if _is_entry(x))
        )
        self._refresh = self._load_json(REFRESH, files[REFRESH])
        self._health = {
            k: Health.from_dict(v)
            for k, v in self._load_json(HEALTH, files[HEALTH]).items()
            if isinstance(v, dict)
        }
        self._seeds = {
            k: SeedRecord.from_dict(v)
            for k, v in self._load_json(SEEDS, files[SEEDS]).items()
            if isinstance(v, dict)
        }
        self._owners = {
            k: v
            for k, v in self._load_json(CONVERSATIONS, files[CONVERSATIONS]).items()
            if isinstance(v, dict) and isinstance(v.get("owner"), str)
        }
        self._owned = {}
        for cid, info in sorted(self._owners.items(), key=lambda kv: _created(kv[1])):
            self._owned.setdefault(info["owner"], []).append(cid)
        self._reindex()

    def _read_all(self) -> dict[str, str]:
        _private_dir(self.dir)
        for stale in self.dir.glob(".*.tmp"):  # left by a crash mid-write
            with contextlib.suppress(OSError):
                stale.unlink()
        out = {}
        for name in (TOKENS, ERRORS, REFRESH, HEALTH, SEEDS, CONVERSATIONS):
            path = self.dir / name
            out[name] = path.read_text("utf-8", errors="replace") if path.exists() else ""
        return out

    def _load_json(self, name: str, text: str) -> dict[str, Any]:
        if not text.strip():
            return {}
        try:
            data = json.loads(text)
        except ValueError:
            log.warning("%s is not valid JSON; starting with an empty one", self.dir / name)
            return {}
        return data if isinstance(data, dict) else {}

    def _reindex(self) -> None:
        self._lines = list(dict.fromkeys(normalise_line(x) for x in self._raw if _is_entry(x)))
        self._ids = {token_id(line): line for line in self._lines}

    async def close(self) -> None:
        await self._w_health.commit()

    # -- rendering ------------------------------------------------------------
    def _render_tokens(self) -> bytes:
        return "".join(line + "\n" for line in self._raw).encode()

    def _render_errors(self) -> bytes:
        return "".join(line + "\n" for line in self._errors).encode()

    def _render_refresh(self) -> bytes:
        return json.dumps(self._refresh, indent=2).encode()

    def _render_health(self) -> bytes:
        data = {k: v.to_dict() for k, v in self._health.items() if k in self._ids}
        return json.dumps(data, indent=2).encode()

    def _render_seeds(self) -> bytes:
        return json.dumps({k: v.to_dict() for k, v in self._seeds.items()}, indent=2).encode()

    def _render_owners(self) -> bytes:
        return json.dumps(self._owners, indent=2).encode()

    # -- pool -----------------------------------------------------------------
    async def tokens(self) -> list[str]:
        return list(self._lines)

    async def add_tokens(self, lines: Sequence[str]) -> list[str]:
        present = set(self._lines)
        added = []
        for line in lines:
            norm = normalise_line(line)
            if norm and norm not in present:
                present.add(norm)
                added.append(norm)
        if added:
            self._raw.extend(added)
            self._reindex()
            await self._w_tokens.commit()
        return added

    async def remove_tokens(self, lines: Collection[str]) -> int:
        gone = {normalise_line(x) for x in lines} & set(self._lines)
        if not gone:
            return 0
        self._raw = [x for x in self._raw if not (_is_entry(x) and normalise_line(x) in gone)]
        for line in gone:
            self._health.pop(token_id(line), None)
        self._reindex()
        await self._w_tokens.commit()
        await self._w_health.commit()
        return len(gone)

    async def replace_token(self, old: str, new: str) -> int:
        changed = 0
        for i, raw in enumerate(self._raw):
            if not _is_entry(raw):
                continue
            token, sep, account = normalise_line(raw).partition(",")
            if token == old:
                line = new + sep + account
                moved = self._health.pop(token_id(normalise_line(raw)), None)
                if moved is not None:
                    self._health[token_id(line)] = moved
                self._raw[i] = line
                changed += 1
        if changed:
            self._reindex()
            await self._w_tokens.commit()
            await self._w_health.commit()
        return changed

    async def clear_tokens(self) -> None:
        self._raw = [x for x in self._raw if not _is_entry(x)]
        self._health.clear()
        self._reindex()
        await self._w_tokens.commit()
        await self._w_health.commit()

    # -- error list -------------------------------------------------------------
    async def errors(self) -> list[str]:
        return list(self._errors)

    async def add_error(self, token: str) -> bool:
        if token in self._errors:
            return False
        self._errors.append(token)
        await self._w_errors.commit()
        return True

    async def clear_errors(self) -> None:
        self._errors.clear()
        await self._w_errors.commit()

    # -- health -------------------------------------------------------------------
    async def health(self) -> dict[str, Health]:
        return dict(self._health)

    async def set_health(self, entry_id: str, health: Health) -> None:
        if entry_id not in self._ids:
            return
        self._health[entry_id] = health
        await self._w_health.commit()

    async def touch(self, entry_id: str, when: float, error: str | None = None) -> None:
        if entry_id not in self._ids:
            return
        current = self._health.get(entry_id, Health())
        if error is None:
            self._health[entry_id] = current.with_(last_used=when)
        else:
            self._health[entry_id] = current.with_(last_used=when, last_error=error)

    # -- refresh cache ------------------------------------------------------------
    async def cached_access(self, refresh_token: str) -> CachedAccess | None:
        raw = self._refresh.get(refresh_token)
        if not isinstance(raw, dict):
            return None
        token, ts, exp, rot = (raw.get(k) for k in ("token", "timestamp", "expires", "rotated_to"))
        return CachedAccess(
            token=token if isinstance(token, str) else None,
            timestamp=float(ts) if isinstance(ts, (int, float)) else 0.0,
            expires=float(exp) if isinstance(exp, (int, float)) else None,
            rotated_to=rot if isinstance(rot, str) else None,
        )

    async def put_access(
        self, refresh_token: str, cached: CachedAccess, *, rotated_from: str | None = None
    ) -> None:
        entry: dict[str, Any] = {"token": cached.token, "timestamp": int(cached.timestamp)}
        if cached.expires is not None:
            entry["expires"] = cached.expires
        self._refresh[refresh_token] = entry
        if rotated_from is not None:
            self._refresh[rotated_from] = {
                "rotated_to": refresh_token,
                "timestamp": int(cached.timestamp),
            }
        horizon = self._clock() - _ALIAS_SECONDS
        for key in [
            k
            for k, v in self._refresh.items()
            if "rotated_to" in v and v.get("timestamp", 0) < horizon
        ]:
            del self._refresh[key]
        await self._w_refresh.commit()

    # -- rate-limit memory (in memory only, as in the original) --------------------
    async def limits(self, model: str) -> dict[str, float]:
        now = self._clock()
        table = self._limits.get(model, {})
        for key in [k for k, until in table.items() if until <= now]:
            del table[key]
        return dict(table)

    async def set_limit(self, model: str, entry_id: str, until: float) -> None:
        self._limits.setdefault(model, {})[entry_id] = until

    # -- mirror seeds and conversation ownership -----------------------------------
    async def seeds(self) -> dict[str, SeedRecord]:
        return dict(self._seeds)

    async def seed(self, key: str) -> SeedRecord | None:
        return self._seeds.get(key)

    async def put_seed(self, key: str, record: SeedRecord) -> None:
        self._seeds[key] = record
        await self._w_seeds.commit()

    async def remove_seed(self, key: str) -> bool:
        if self._seeds.pop(key, None) is None:
            return False
        await self._w_seeds.commit()
        return True

    async def own_conversation(self, conversation_id: str, owner: str) -> bool:
        current = self._owners.get(conversation_id)
        if current is not None:
            return bool(current["owner"] == owner)
        self._owners[conversation_id] = {"owner": owner, "created": self._clock()}
        self._owned.setdefault(owner, []).append(conversation_id)
        await self._w_owners.commit()
        return True

    async def conversation_owner(self, conversation_id: str) -> str | None:
        info = self._owners.get(conversation_id)
        return None if info is None else str(info["owner"])

    async def owned_conversations(self, owner: str) -> list[str]:
        return list(reversed(self._owned.get(owner, [])))

    # -- coordination -------------------------------------------------------------
    async def next_counter(self, name: str) -> int:
        value = self._counters.get(name, 0)
        self._counters[name] = value + 1
        return value

    @contextlib.asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(name, (asyncio.Lock(), 0))
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[name]
            if users == 1:
                del self._locks[name]  # keep the table as small as the set of busy names
            else:
                self._locks[name] = (lock, users - 1)

    # -- copying ------------------------------------------------------------------
    async def export_state(self) -> Snapshot:
        return Snapshot(
            tokens=list(self._lines),
            errors=list(self._errors),
            health={k: v for k, v in self._health.items() if k in self._ids},
            refresh={
                k: CachedAccess.from_dict(v)
                for k, v in self._refresh.items()
                if isinstance(v, dict)
            },
            seeds=dict(self._seeds),
            owners={
                cid: (str(info["owner"]), _created(info)) for cid, info in self._owners.items()
            },
        )

    async def import_state(self, snapshot: Snapshot) -> None:
        await self.add_tokens(snapshot.tokens)
        new_errors = [t for t in dict.fromkeys(snapshot.errors) if t not in self._errors]
        self._errors.extend(new_errors)
        self._health.update({k: v for k, v in snapshot.health.items() if k in self._ids})
        self._refresh.update({k: v.to_dict() for k, v in snapshot.refresh.items()})
        self._seeds.update(snapshot.seeds)
        for cid, (owner, created) in sorted(snapshot.owners.items(), key=lambda kv: kv[1][1]):
            if cid not in self._owners:
                self._owners[cid] = {"owner": owner, "created": created}
                self._owned.setdefault(owner, []).append(cid)
        await asyncio.gather(
            self._w_errors.commit(),
            self._w_health.commit(),
            self._w_refresh.commit(),
            self._w_seeds.commit(),
            self._w_owners.commit(),
        )
