"""Everything the emulator remembers: sentinel and conduit tokens, refresh tokens, conversations,
files, the request log and the fault plans. One `State` per server process; `reset()` empties it.
"""

from __future__ import annotations

import random
import secrets
import struct
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

from .faults import PlanQueue
from .streams import Chunk

REQUIREMENTS_TTL = 540.0  # expire_after (docs/backend-2026.md#one-turn)
PREPARE_TTL = 540.0
CONDUIT_TTL = 600.0
BODY_LOG_LIMIT = 64 * 1024


def make_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid RGB PNG filled with one colour (stdlib only)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\x00" + bytes(rgb) * width
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


FAKE_PNG = make_png(8, 8, (0x10, 0xA3, 0x7F))


@dataclass(kw_only=True)
class Requirement:
    token: str
    seed: str
    difficulty: str
    dialect: str  # sentinel.CLASSIC or sentinel.DIALECT_2026: which proof algorithm applies
    persona: str
    expires_at: float
    used: bool = False
    #: tokens the conversation call must carry (openai-sentinel-turnstile-token /
    #: -arkose-token), set by a /_fake/sentinel challenge
    turnstile: str | None = None
    arkose: str | None = None


@dataclass(kw_only=True)
class Prepared:
    token: str
    seed: str
    difficulty: str
    persona: str
    expires_at: float
    used: bool = False


@dataclass(kw_only=True)
class StoredFile:
    file_id: str
    name: str
    size: int
    use_case: str
    mime: str = "application/octet-stream"
    data: bytes | None = None
    sig: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    created: float = field(default_factory=time.time)


@dataclass(kw_only=True)
class Conversation:
    id: str
    title: str
    model: str
    create_time: float
    update_time: float
    gizmo_id: str | None = None
    is_visible: bool = True
    messages: list[dict[str, Any]] = field(default_factory=list)
    late_messages: list[dict[str, Any]] = field(default_factory=list)
    late_ready_at: float = 0.0
    async_status: int | None = None
    # The last stream, kept for /f/conversation/resume.
    chunks: list[Chunk] = field(default_factory=list)
    resume_token: str = ""
    resume_fail: bool = False
    record: bool = True  # false for history_and_training_disabled turns


class State:
    def __init__(
        self,
        *,
        difficulty: str,
        dialect: str,
        fmt: str,
        replay: str | None,
        refresh_tokens: list[str],
        codex_replay: str | None = None,
        codex_replay_framing: str = "verbatim",
    ) -> None:
        self.difficulty = difficulty
        self.dialect = dialect
        self.format = fmt
        self.replay = replay
        self.codex_replay = codex_replay
        self.codex_replay_framing = codex_replay_framing
        self.initial_refresh_tokens = list(refresh_tokens)
        self.base_url = ""
        self.reset()

    def reset(self) -> None:
        self.clock_offset = 0.0
        self.requirements: dict[str, Requirement] = {}
        self.prepared: dict[str, Prepared] = {}
        self.conduits: dict[str, float] = {}  # token -> expires_at
        self.refresh_tokens: dict[str, str] = {t: "live" for t in self.initial_refresh_tokens}
        self.refresh_calls = 0
        self.conversations: dict[str, Conversation] = {}
        self.files: dict[str, StoredFile] = {}
        self.log: list[dict[str, Any]] = []
        self.plans = PlanQueue()
        self.codex_calls: dict[str, int] = {}  # account id -> accepted Codex calls
        self.codex_cache: dict[str, int] = {}  # prompt_cache_key -> last input tokens
        self.codex_replay_uses = 0
        # /_fake/sentinel: persona override and the challenges to ask for
        # ({"persona", "turnstile": {"dx", "token"}, "arkose": {"dx", "token"}}).
        self.challenges: dict[str, Any] = {}

    def now(self) -> float:
        return time.time() + self.clock_offset

    def new_seed(self) -> str:
        return repr(random.random())

    def log_request(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> dict[str, Any]:
        text = body[:BODY_LOG_LIMIT].decode("utf-8", errors="replace")
        entry: dict[str, Any] = {
            "seq": len(self.log),
            "time": self.now(),
            "method": method,
            "path": path,
            "query": query,
            "headers": dict(headers),
            "body": text,
            "body_truncated": len(body) > BODY_LOG_LIMIT,
            "body_size": len(body),
        }
        self.log.append(entry)
        return entry

    def add_file(
        self, *, name: str, size: int, use_case: str, file_id: str | None = None
    ) -> StoredFile:
        fid = file_id or f"file-{secrets.token_urlsafe(18).replace('-', 'a').replace('_', 'b')}"
        stored = StoredFile(file_id=fid, name=name, size=size, use_case=use_case)
        self.files[fid] = stored
        return stored

    def generated_image(self, scheme: str) -> tuple[str, StoredFile]:
        """Register a PNG for a generated image; returns (asset_pointer, file)."""
        if scheme == "sediment":
            fid = f"file_{uuid.uuid4().hex}"
        else:
            fid = f"file-{secrets.token_hex(11)}"
        stored = self.add_file(
            name=f"{fid}.png", size=len(FAKE_PNG), use_case="multimodal", file_id=fid
        )
        stored.mime = "image/png"
        stored.data = FAKE_PNG
        return f"{scheme}://{fid}", stored

    def blob_url(self, stored: StoredFile) -> str:
        return f"{self.base_url}/_blob/{stored.file_id}?sig={stored.sig}"
