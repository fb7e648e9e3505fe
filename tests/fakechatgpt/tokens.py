"""Access tokens (JWT-shaped), opaque sentinel-style tokens, and their checks.

The emulator does not verify signatures: like docs/backend-protocol.md#accounts-and-refresh says,
what matters to
chat2api is the JWT shape and the `exp` claim. Any three-segment base64url token whose payload is
a JSON object with a future `exp` is accepted; anything else is a 401.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
import uuid
from typing import Any

_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")

AUTH_CLAIM = "https://api.openai.com/auth"
PROFILE_CLAIM = "https://api.openai.com/profile"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not _B64URL.match(text):
        raise ValueError("not base64url")
    text = text.rstrip("=")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_access_token(
    exp_in: float = 3600,
    account_id: str | None = None,
    *,
    now: float | None = None,
    plan_type: str = "plus",
    team_accounts: list[str] | None = None,
    **claims: Any,
) -> str:
    """A JWT shaped like a ChatGPT access token; the signature is random bytes.

    `team_accounts` lists Team workspaces the token may also use as `chatgpt-account-id` on the
    Codex backend (an emulator-only claim, `workspace_account_ids`).
    """
    issued = int(time.time() if now is None else now)
    account = account_id or str(uuid.uuid4())
    payload: dict[str, Any] = {
        "aud": ["https://api.openai.com/v1"],
        "client_id": "app_X8zY6vW2pQ9tR3dE7nK1jL5gH",
        "exp": int(issued + exp_in),
        AUTH_CLAIM: {
            "chatgpt_account_id": account,
            "chatgpt_plan_type": plan_type,
            "chatgpt_user_id": f"user-{secrets.token_hex(12)}",
            "user_id": f"user-{secrets.token_hex(12)}",
        },
        PROFILE_CLAIM: {"email": "fake@example.com", "email_verified": True},
        "iat": issued,
        "iss": "https://auth.openai.com",
        "jti": str(uuid.uuid4()),
        "nbf": issued,
        "scp": ["openid", "email", "profile", "offline_access", "model.request"],
        "sub": f"auth0|{secrets.token_hex(12)}",
    }
    if team_accounts:
        payload[AUTH_CLAIM]["workspace_account_ids"] = list(team_accounts)
    payload.update(claims)
    header = {"alg": "RS256", "kid": "fakechatgpt", "typ": "JWT"}
    return ".".join(
        [
            b64url(json.dumps(header, separators=(",", ":")).encode()),
            b64url(json.dumps(payload, separators=(",", ":")).encode()),
            b64url(secrets.token_bytes(256)),
        ]
    )


class TokenError(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


MSG_BAD_TOKEN = "Could not parse your authentication token. Please try signing in again."
MSG_EXPIRED = "Your authentication token has expired. Please try signing in again."
MSG_MISSING = "Unauthorized - Access token is missing"


def check_access_token(token: str, now: float) -> dict[str, Any]:
    """Return the JWT payload, or raise TokenError with the backend's 401 detail."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise TokenError(MSG_BAD_TOKEN)
    try:
        header = json.loads(b64url_decode(parts[0]))
        payload = json.loads(b64url_decode(parts[1]))
        b64url_decode(parts[2])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise TokenError(MSG_BAD_TOKEN) from exc
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise TokenError(MSG_BAD_TOKEN)
    exp = payload.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        raise TokenError(MSG_BAD_TOKEN)
    if exp <= now:
        raise TokenError(MSG_EXPIRED)
    return payload


def opaque_token(prefix: str = "gAAAAAB", nbytes: int = 96) -> str:
    """A Fernet-looking opaque token like the sentinel ones (`gAAAAAB...`)."""
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).decode("ascii")
