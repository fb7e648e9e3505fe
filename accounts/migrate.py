"""Copying the account state between the file store and Redis.

``python -m accounts.migrate --to redis`` copies everything under ``DATA_DIR``
(the pool, the error list, health, the refresh cache, the mirror's seeds and
conversation owners) into Redis at ``REDIS_URL`` under ``REDIS_PREFIX``;
``--to files`` copies Redis's state into ``DATA_DIR``. Settings come from
``config.yaml`` (or ``--config``) and the environment, as for chat2api itself.
The copy merges: entries already at the destination stay, and records with the
same key are replaced by the source's. Stop the instances writing to the source
first, or run it again afterwards.

At start-up with ``REDIS_URL``, :func:`import_files` does the ``--to redis``
copy by itself when the shared pool is empty and ``DATA_DIR/token.txt`` exists.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from accounts.filestore import TOKENS, FileStore
from accounts.redisstore import RedisStore, safe_url
from accounts.store import Snapshot, Store
from errors import UpstreamUnavailable
from settings import Settings, SettingsError, load_settings

log = logging.getLogger(__name__)


def make_store(settings: Settings) -> Store:
    """The store the settings name: Redis with ``redis_url``, else files in ``data_dir``."""
    if settings.redis_url:
        return RedisStore(settings.redis_url, prefix=settings.redis_prefix)
    return FileStore(Path(settings.data_dir).expanduser())


def summary(snapshot: Snapshot) -> str:
    return (
        f"{len(snapshot.tokens)} token(s), {len(snapshot.errors)} dead token(s), "
        f"{len(snapshot.health)} health record(s), {len(snapshot.refresh)} refresh-cache "
        f"entr{'y' if len(snapshot.refresh) == 1 else 'ies'}, {len(snapshot.seeds)} seed(s), "
        f"{len(snapshot.owners)} owned conversation(s)"
    )


async def copy_state(source: Store, target: Store) -> Snapshot:
    """Copy everything durable from ``source`` into ``target`` (both opened)."""
    snapshot = await source.export_state()
    await target.import_state(snapshot)
    return snapshot


async def import_files(store: RedisStore, data_dir: Path) -> Snapshot | None:
    """Import ``data_dir`` into ``store`` if its pool is empty and ``token.txt`` exists.

    Several instances starting at once import once (a shared lock). Raises
    UpstreamUnavailable when Redis is unreachable.
    """
    if not (data_dir / TOKENS).exists() or await store.tokens():
        return None
    async with store.lock("import"):
        if await store.tokens():
            return None  # another instance imported meanwhile
        files = FileStore(data_dir)
        await files.open()
        snapshot = await copy_state(files, store)
    log.info("imported %s from %s into the shared pool (%r)", summary(snapshot), data_dir, store)
    return snapshot


async def migrate(settings: Settings, to: str) -> Snapshot:
    if not settings.redis_url:
        raise SystemExit("accounts.migrate: set REDIS_URL (or redis_url in config.yaml) first")
    files = FileStore(Path(settings.data_dir).expanduser())
    shared = RedisStore(settings.redis_url, prefix=settings.redis_prefix)
    source, target = (files, shared) if to == "redis" else (shared, files)
    await files.open()
    try:
        return await copy_state(source, target)
    finally:
        await shared.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m accounts.migrate",
        description="Copy chat2api's account state between DATA_DIR's files and Redis.",
    )
    parser.add_argument("--to", choices=("redis", "files"), required=True)
    default = os.environ.get("CHAT2API_CONFIG") or str(Path(__file__).parents[1] / "config.yaml")
    parser.add_argument("--config", default=default, help=f"settings file ({default})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        settings = load_settings(args.config, os.environ)
    except SettingsError as e:
        print(f"accounts.migrate: {e}", file=sys.stderr)
        return 2
    try:
        snapshot = asyncio.run(migrate(settings, args.to))
    except UpstreamUnavailable as e:
        print(f"accounts.migrate: {e}", file=sys.stderr)
        return 1
    shared = f"{safe_url(settings.redis_url or '')} (prefix {settings.redis_prefix})"
    files = settings.data_dir
    source, target = (files, shared) if args.to == "redis" else (shared, files)
    print(f"copied {summary(snapshot)} from {source} to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
