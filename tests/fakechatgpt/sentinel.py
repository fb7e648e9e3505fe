"""Sentinel checks: the requirements config (`p`) and proof-of-work answers, both dialects.

This is the emulator's OWN implementation, written from the documents (docs/sentinel.md,
its own code); it deliberately shares no code with
`pow/`, so a bug in our solver cannot hide behind the same bug here.

Classic (SHA3-512): `p = "gAAAAAC" + b64(json(config18))`, proof `"gAAAAAB" + b64(json(config18))`;
accept when the first len(difficulty)/2 bytes of SHA3-512(seed + b64), big-endian, are strictly
below int(difficulty, 16).

2026 (FNV-1a): `p = "gAAAAAC" + b64(json(config25)) + "~S"`, proof likewise with `"gAAAAAB"`;
accept when fnv1a32(seed + b64) as 8 lower-case hex digits, cut to len(difficulty), is <= the
difficulty (string comparison). The hash is FNV-1a-32 over the characters (offset 2166136261,
prime 16777619, 32-bit wrap like JS Math.imul) followed by the murmur3 `fmix32` finalizer, as
aurora's `internal/prooftoken.FNV1aHash` (the doc's [CODE] source) does; the 2026 doc only
names FNV-1a.

Both dialects' configs must carry what the home page shows (`site.py`, docs/site-page.md):
element 5 one of its scripts, element 6 its deployment id (classic) or its build (2026).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from . import site

REQ_PREFIX = "gAAAAAC"
PROOF_PREFIX = "gAAAAAB"
SUFFIX_2026 = "~S"
FAIL_MARKER = (
    "wQ8Lk5FbGpA2NcR9dShT6gYjU7VxZ4D"  # a solver that gave up (docs/sentinel.md#giving-up)
)

CLASSIC = "classic"
DIALECT_2026 = "2026"
CONFIG_LEN = {CLASSIC: 18, DIALECT_2026: 25}


class SentinelError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, kw_only=True)
class DecodedConfig:
    dialect: str
    b64: str  # the base64 text exactly as sent (what gets hashed)
    config: list[Any]


def decode_config(token: str, prefix: str, dialects: tuple[str, ...]) -> DecodedConfig:
    """Decode `prefix + b64(json(config)) [+ "~S"]`; raise SentinelError when malformed."""
    if not isinstance(token, str) or not token.startswith(prefix):
        raise SentinelError(f"token must start with {prefix}")
    rest = token[len(prefix) :]
    dialect = DIALECT_2026 if rest.endswith(SUFFIX_2026) else CLASSIC
    if dialect == DIALECT_2026:
        rest = rest[: -len(SUFFIX_2026)]
    if dialect not in dialects:
        raise SentinelError(f"{dialect} sentinel token not accepted here")
    if rest.startswith(FAIL_MARKER):
        raise SentinelError("proof of work was not solved (fallback answer)")
    try:
        raw = base64.b64decode(rest, validate=True)
        config = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise SentinelError("token payload is not base64 JSON") from exc
    if not isinstance(config, list):
        raise SentinelError("token payload is not a JSON array")
    want = CONFIG_LEN[dialect]
    if len(config) != want:
        raise SentinelError(f"config array has {len(config)} elements, expected {want}")
    if isinstance(config[3], bool) or not isinstance(config[3], int):
        raise SentinelError("config[3] (nonce) must be an integer")
    if config[5] not in site.SCRIPTS:
        raise SentinelError("config[5] is not a script of the home page")
    if config[6] != (site.DPL if dialect == CLASSIC else site.BUILD):
        raise SentinelError("config[6] is not the build of the home page")
    return DecodedConfig(dialect=dialect, b64=rest, config=config)


def sha3_accepts(seed: str, difficulty: str, b64: str) -> bool:
    digest = hashlib.sha3_512((seed + b64).encode("utf-8")).digest()
    nbytes = len(difficulty) // 2
    return int.from_bytes(digest[:nbytes], "big") < int(difficulty, 16)


def fnv1a32_hex(text: str) -> str:
    h = 2166136261
    for ch in text:  # seed and base64 are ASCII, where code points == JS char codes
        h ^= ord(ch)
        h = (h * 16777619) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 2246822507) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 3266489909) & 0xFFFFFFFF
    h ^= h >> 16
    return f"{h:08x}"


def fnv_accepts(seed: str, difficulty: str, b64: str) -> bool:
    return fnv1a32_hex(seed + b64)[: len(difficulty)] <= difficulty.lower()


def verify_proof(proof: str | None, *, seed: str, difficulty: str, dialect: str) -> None:
    """Check a proof token for this seed and difficulty; raise SentinelError when wrong."""
    if not proof:
        raise SentinelError("Missing proof of work token")
    decoded = decode_config(proof, PROOF_PREFIX, (dialect,))
    ok = (sha3_accepts if dialect == CLASSIC else fnv_accepts)(seed, difficulty, decoded.b64)
    if not ok:
        raise SentinelError("Invalid proof of work token")


def valid_difficulty(difficulty: str) -> bool:
    try:
        int(difficulty, 16)
    except ValueError:
        return False
    return len(difficulty) % 2 == 0 and len(difficulty) > 0
