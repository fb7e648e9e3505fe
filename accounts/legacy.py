"""The original chat2api's management routes, for the scripts and pages that call
them (docs/original-clients.md), behind the admin key like the rest of the admin plane:

* ``POST /tokens/upload``, form field ``text`` (urlencoded or multipart), one
  token a line: ``{"status": "success", "tokens_count": N}``, plus what today's
  API says (``added``, masked ``rejected``).
* ``POST /tokens/clear``: ``{"status": "success", "tokens_count": 0}``.
* ``POST /tokens/error``: ``{"status": "success", "error_tokens": [masked]}``;
  the original disclosed the refresh tokens themselves.
* ``POST /seed_tokens/clear``: every mirror seed removed,
  ``{"status": "success", "seed_tokens_count": 0}``.
* ``GET /tokens/add/{token}``: refused, naming the route to use: a token in a
  URL ends up in access logs, proxies and browser histories.
"""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from errors import InvalidRequest, PayloadTooLarge

if TYPE_CHECKING:
    from accounts.admin import AdminApi, AdminResponse

MAX_FORM = 1 << 20
ROUTES = ("/tokens/upload", "/tokens/clear", "/tokens/error", "/seed_tokens/clear")
TOKEN_IN_URL = (
    "Tokens are never taken in a URL (it would end up in logs and histories): POST them "
    "to /tokens/upload (form field text) or /tokens/api/tokens, with the admin key as "
    "Authorization: Bearer <key>."
)


def is_legacy(route: str) -> bool:
    return route in ROUTES or route.startswith("/tokens/add/") or route == "/tokens/add"


def form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The text fields of an urlencoded or multipart/form-data body."""
    if len(body) > MAX_FORM:
        raise PayloadTooLarge(f"At most {MAX_FORM} bytes per upload.")
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        parser: Any = email.parser.BytesParser
        message = parser(policy=email.policy.HTTP).parsebytes(head + body)
        fields: dict[str, str] = {}
        if not message.is_multipart():
            raise InvalidRequest("The multipart body could not be read.")
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                fields[name] = payload.decode("utf-8", "replace")
        return fields
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The body is not UTF-8.") from None
    return dict(parse_qsl(text, keep_blank_values=True))


async def handle(
    api: AdminApi, method: str, route: str, headers: Mapping[str, str], body: bytes
) -> AdminResponse:
    from accounts.admin import _allow, json_response

    if route.startswith("/tokens/add"):
        raise InvalidRequest(TOKEN_IN_URL, code="token_in_url")
    api.authorised(headers)
    _allow(method, "POST")
    if route == "/tokens/upload":
        fields = form_fields(headers.get("content-type", ""), body)
        if "text" not in fields:
            raise InvalidRequest("Expected the form field text.", param="text")
        result = await api.pool.add(fields["text"].splitlines())
        return json_response(
            200,
            {
                "status": "success",
                "tokens_count": result.count,
                "added": len(result.added),
                "rejected": [{"line": r.line, "reason": r.reason} for r in result.rejected],
            },
        )
    if route == "/tokens/clear":
        await api.pool.clear()
        return json_response(200, {"status": "success", "tokens_count": 0})
    if route == "/tokens/error":
        errors = await api.pool.error_list()
        return json_response(
            200, {"status": "success", "error_tokens": [e["token"] for e in errors]}
        )
    # /seed_tokens/clear
    store = api.pool.store
    for key in list(await store.seeds()):
        await store.remove_seed(key)
    return json_response(200, {"status": "success", "seed_tokens_count": 0})
