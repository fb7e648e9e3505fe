"""The token management API and page, as pure handlers (no mitmproxy).

Routes, each also under ``/<prefix>`` (the original's, with its holes closed:
docs/original-behaviour.md#weaknesses-fixed-here 1, 2 and 6):

* ``GET /tokens``: a plain HTML page (no external resources); it asks for the
  admin key once and keeps it in ``sessionStorage``.
* ``GET /tokens/api/tokens``: ``{"count", "usable", "tokens": [masked views]}``
* ``POST /tokens/api/tokens``: ``text/plain`` lines or ``{"tokens": [...]}``;
  answers ``{"added", "rejected": [{"line": <masked>, "reason"}], "count"}``
* ``DELETE /tokens/api/tokens``: clear the pool, health and error list
* ``DELETE /tokens/api/tokens/{id}``: remove one entry by its masked id
* ``GET /tokens/api/errors``: ``{"count", "errors": [{"id", "token"}]}``

The API needs ``Authorization: Bearer <key>``, where the key is ``admin_key``
or any AUTHORIZATION code, compared in constant time. Tokens never appear in a
URL, and every answer shows them masked. Errors use OpenAI's envelope.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accounts import legacy
from accounts.pool import Pool
from accounts.store import State
from errors import (
    AuthenticationFailed,
    Chat2ApiError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
)
from translator.chunks import json_bytes

MAX_BODY = 1 << 20
_ID = re.compile(r"[0-9a-f]{12}")
_SECURITY = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class AdminResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def json_response(
    status: int, data: Any, headers: Mapping[str, str] | None = None
) -> AdminResponse:
    body = json_bytes(data)
    return AdminResponse(
        status=status,
        headers={**_SECURITY, "content-type": "application/json", **(headers or {})},
        body=body,
    )


def error_response(error: Chat2ApiError) -> AdminResponse:
    headers = error.headers()
    if error.status == 401:  # the admin plane authenticates with a bearer key
        headers["www-authenticate"] = "Bearer"
    return json_response(error.status, error.to_dict(), headers)


class AdminApi:
    """Answers the admin routes for one :class:`Pool`; see the module docstring."""

    def __init__(self, pool: Pool, *, admin_key: str | None = None, prefix: str = "") -> None:
        self.pool = pool
        self.admin_key = admin_key
        self.prefix = prefix

    @property
    def prefix(self) -> str:
        return self._prefix

    @prefix.setter
    def prefix(self, value: str) -> None:
        self._prefix = "/" + value.strip("/") if value.strip("/") else ""

    def route(self, path: str) -> str | None:
        """The admin route (``/tokens…``) for a request path, or None if not ours."""
        return admin_route(path, self._prefix)

    def authorised(self, headers: Mapping[str, str]) -> None:
        """Raise unless the request carries an admin key (constant-time compare)."""
        keys = [k for k in (self.admin_key, *self.pool.codes) if k]
        if not keys:
            raise PermissionDenied("The admin API is disabled: set ADMIN_KEY or AUTHORIZATION.")
        value = headers.get("authorization", "")
        scheme, _, given = value.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise AuthenticationFailed("Missing admin key (Authorization: Bearer <key>).")
        raw = given.strip().encode("utf-8", "surrogateescape")  # the bytes as sent
        ok = False
        for key in keys:
            ok |= hmac.compare_digest(key.encode(), raw)
        if not ok:
            raise AuthenticationFailed("Invalid admin key.")

    async def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> AdminResponse | None:
        """The answer for an admin route, or None when ``path`` is not one."""
        route = self.route(path)
        if route is None:
            return None
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            return await self._dispatch(method.upper(), route, lower, body)
        except Chat2ApiError as exc:
            return error_response(exc)

    async def _dispatch(
        self, method: str, route: str, headers: dict[str, str], body: bytes
    ) -> AdminResponse:
        if route == "/tokens":
            _allow(method, "GET", "HEAD")
            return page_response(head=method == "HEAD")
        if legacy.is_legacy(route):
            return await legacy.handle(self, method, route, headers, body)
        if not route.startswith("/tokens/api/"):
            raise NotFound(f"Unknown path {route}.")
        self.authorised(headers)
        if route == "/tokens/api/tokens":
            _allow(method, "GET", "POST", "DELETE")
            if method == "GET":
                return await self._list()
            if method == "POST":
                return await self._add(headers, body)
            await self.pool.clear()
            return json_response(200, {"count": 0})
        if route == "/tokens/api/errors":
            _allow(method, "GET")
            errors = await self.pool.error_list()
            return json_response(200, {"count": len(errors), "errors": errors})
        tail = route.removeprefix("/tokens/api/tokens/")
        if tail != route and _ID.fullmatch(tail):
            _allow(method, "DELETE")
            if not await self.pool.remove(tail):
                raise NotFound(f"No token with id {tail}.")
            count = len(await self.pool.store.tokens())
            return json_response(200, {"deleted": tail, "count": count})
        raise NotFound(f"Unknown path {route}.")

    async def _list(self) -> AdminResponse:
        views = await self.pool.views()
        usable = sum(v.state == State.HEALTHY.value for v in views)
        data = {"count": len(views), "usable": usable, "tokens": [v.to_dict() for v in views]}
        return json_response(200, data)

    async def _add(self, headers: dict[str, str], body: bytes) -> AdminResponse:
        if len(body) > MAX_BODY:
            raise PayloadTooLarge(f"At most {MAX_BODY} bytes per upload.")
        lines, rejected = _upload_lines(headers.get("content-type", ""), body)
        result = await self.pool.add(lines)
        data = {
            "added": len(result.added),
            "rejected": rejected + [{"line": r.line, "reason": r.reason} for r in result.rejected],
            "count": result.count,
        }
        return json_response(200, data)


def admin_route(path: str, prefix: str = "") -> str | None:
    """``/tokens…`` for ``path`` (query dropped, ``/<prefix>`` stripped), or None."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    if prefix and (path == prefix + "/tokens" or path.startswith(prefix + "/tokens/")):
        path = path[len(prefix) :]
    elif prefix and path.startswith(prefix + "/") and path[len(prefix) :] in _OTHER_ROUTES:
        path = path[len(prefix) :]
    if path == "/tokens" or path.startswith("/tokens/"):
        return path.rstrip("/") or "/tokens"
    if path in _OTHER_ROUTES:
        return path
    return None


# The admin routes outside /tokens (accounts/legacy.py, accounts/authrefresh.py).
_OTHER_ROUTES = ("/seed_tokens/clear", "/auth/refresh")


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise InvalidRequest(
            f"Method {method} not allowed; use {', '.join(allowed)}.",
            code="method_not_allowed",
            status=405,
        )


def _upload_lines(content_type: str, body: bytes) -> tuple[list[str], list[dict[str, str]]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The body is not UTF-8.") from None
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        return text.splitlines(), []
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidRequest("The body is not valid JSON.") from None
    items = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise InvalidRequest('Expected {"tokens": [...]}.', param="tokens")
    lines = [x for x in items if isinstance(x, str)]
    rejected = [{"line": "…", "reason": "not a string"} for x in items if not isinstance(x, str)]
    return lines, rejected


# -- the page (admin_page.html: plain HTML and JS, no external resources) ---------

_PAGE_FILE = Path(__file__).with_name("admin_page.html")
PAGE = _PAGE_FILE.read_bytes()
_SCRIPT = PAGE[PAGE.index(b"<script>") + 8 : PAGE.index(b"</script>")]
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT).digest()).decode()
_CSP = (
    "default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; form-action 'none'; frame-ancestors 'none'"
)


def page_response(*, head: bool = False) -> AdminResponse:
    headers = {
        **_SECURITY,
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": _CSP,
    }
    return AdminResponse(status=200, headers=headers, body=b"" if head else PAGE)
