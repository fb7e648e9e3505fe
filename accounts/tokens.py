"""Telling credentials apart by structure, and showing them safely.

A pool line is ``token`` or ``token,account_id``
(docs/original-behaviour.md#token-kinds-and-the-pool). The token is

* an **access token** when it is a JWT whose payload carries a numeric ``exp``
  (docs/backend-2026.md#tokens), or an ``fk-`` gateway key
  (docs/original-behaviour.md#token-kinds-and-the-pool);
* a **refresh token** when it is opaque: no JWT structure, URL-safe characters,
  at least 20 long. That covers the old 45-character auth0 form and the newer,
  longer ``rt_…`` forms; the original's ``len == 45`` test does not
  (docs/original-behaviour.md#weaknesses-fixed-here, 16).

Anything else is rejected with a reason. Nothing here logs or raises with a raw
credential in the message: callers show :func:`mask` and :func:`token_id` only.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

AUTH_CLAIM = "https://api.openai.com/auth"

_OPAQUE = re.compile(r"[A-Za-z0-9_\-.~+/=]+")
_B64URL = re.compile(r"[A-Za-z0-9_\-]+={0,2}")
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_\-]{1,128}")
_MIN_REFRESH_LEN = 20
_MAX_TOKEN_LEN = 16384


class TokenKind(enum.Enum):
    ACCESS = "access"
    REFRESH = "refresh"


class InvalidToken(ValueError):
    """A line that is not a usable credential; the message is safe to show."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Entry:
    """One pool line, parsed: the credential and its optional Team account id."""

    token: str
    account_id: str | None
    kind: TokenKind
    exp: float | None = None

    @property
    def line(self) -> str:
        """The normalised ``token`` or ``token,account_id`` form, as stored."""
        return self.token if self.account_id is None else f"{self.token},{self.account_id}"

    @property
    def id(self) -> str:
        """The stable short id of this line (the "masked id" of the admin API)."""
        return token_id(self.line)

    @property
    def masked(self) -> str:
        return mask(self.token)


def _b64url_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def jwt_payload(token: str) -> dict[str, Any] | None:
    """The decoded payload of a JWT (signature unchecked), or None if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3 or not all(_B64URL.fullmatch(p) for p in parts[:2]):
        return None
    header = _b64url_json(parts[0])
    payload = _b64url_json(parts[1])
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None
    return payload


def jwt_exp(token: str) -> float | None:
    """The ``exp`` claim of a JWT as a Unix time, or None."""
    payload = jwt_payload(token)
    if payload is None:
        return None
    exp = payload.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    return float(exp)


def account_id_from_jwt(token: str) -> str | None:
    """``https://api.openai.com/auth``.``chatgpt_account_id`` (docs/backend-2026.md#tokens)."""
    payload = jwt_payload(token)
    claim = payload.get(AUTH_CLAIM) if payload else None
    value = claim.get("chatgpt_account_id") if isinstance(claim, dict) else None
    return value if isinstance(value, str) and value else None


def _looks_like_jwt(token: str) -> bool:
    return token.startswith("eyJ") and token.count(".") == 2


def classify(token: str) -> TokenKind:
    """The kind of a bare credential (no account suffix); raises InvalidToken."""
    if not token:
        raise InvalidToken("empty")
    if len(token) > _MAX_TOKEN_LEN:
        raise InvalidToken("too long")
    if any(c.isspace() for c in token):
        raise InvalidToken("contains whitespace")
    if token.startswith("fk-"):
        return TokenKind.ACCESS
    if token.startswith("sk-"):
        raise InvalidToken("an OpenAI API key, not a ChatGPT token")
    if _looks_like_jwt(token) or jwt_payload(token) is not None:
        if jwt_payload(token) is None:
            raise InvalidToken("malformed JWT")
        if jwt_exp(token) is None:
            raise InvalidToken("JWT without an exp claim")
        return TokenKind.ACCESS
    if not _OPAQUE.fullmatch(token):
        raise InvalidToken("unexpected characters")
    if len(token) < _MIN_REFRESH_LEN:
        raise InvalidToken("too short for a refresh token")
    return TokenKind.REFRESH


def normalise_line(line: str) -> str:
    """Strip a line and the spaces around its first comma (the stored form)."""
    token, sep, account = line.strip().partition(",")
    return f"{token.strip()},{account.strip()}" if sep else token.strip()


@functools.lru_cache(maxsize=65536)
def parse_line(line: str) -> Entry:
    """Parse ``token`` or ``token,account_id``; raises InvalidToken with a safe reason."""
    token, sep, account = normalise_line(line).partition(",")
    account_id: str | None = None
    if sep:
        if not _ACCOUNT_ID.fullmatch(account):
            raise InvalidToken("invalid account id after the comma")
        account_id = account
    kind = classify(token)
    exp = jwt_exp(token) if kind is TokenKind.ACCESS else None
    return Entry(token=token, account_id=account_id, kind=kind, exp=exp)


def token_id(value: str) -> str:
    """A stable short id: the first 12 hex digits of sha256."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def mask(token: str) -> str:
    """First 6 and last 4 characters, or less for short values; never the whole."""
    if len(token) >= 20:
        return f"{token[:6]}…{token[-4:]}"
    if len(token) >= 8:
        return f"…{token[-2:]}"
    return "…"
