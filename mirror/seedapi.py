"""``/seedtoken``: managing mirror seeds, behind the admin key (docs/mirror.md#seed-api).

* ``GET /seedtoken``: ``{"count", "seeds": [{"id", "entry_id", "token", "created"}]}``;
  ``id`` is the first 12 hex digits of the seed's key (seeds are not stored, so they
  cannot be listed), ``token`` a direct credential, masked.
* ``POST /seedtoken``: JSON ``{"seed"?, "token"?}`` or the same as a form. Without
  ``seed`` a random one is made; ``token`` is a pool entry id, a direct access or
  refresh token, or absent for a random healthy pool account. Answers the seed (the
  only time it is shown), its id and what it maps to.
* ``DELETE /seedtoken`` with ``{"seed"}`` or ``{"id"}``, or ``DELETE /seedtoken/<id>``;
  ``{"seed": "clear"}`` deletes every seed.

Every answer also carries the original's fields (``"status": "success"``, its
``data`` or ``message``), so the original's clients keep working; ``GET
/seedtoken?seed=S`` answers ``{"status", "data": {"seed", "token"}}`` for one seed.

The key check is the token admin's (:meth:`accounts.admin.AdminApi.authorised`):
``Authorization: Bearer <ADMIN_KEY or an AUTHORIZATION code>``, constant-time.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from accounts.admin import AdminApi, AdminResponse, error_response, json_response
from accounts.store import SeedRecord, seed_key
from accounts.tokens import mask, token_id
from errors import Chat2ApiError, InvalidRequest, NotFound
from mirror.seeds import LoginFailed, Seeds, check_seed, own_token

MAX_BODY = 64 * 1024
_ID = re.compile(r"[0-9a-f]{12}")


class SeedApi:
    def __init__(self, seeds: Seeds, admin: AdminApi) -> None:
        self.seeds = seeds
        self.admin = admin

    async def handle(
        self, method: str, route: str, headers: Mapping[str, str], body: bytes, query: str = ""
    ) -> AdminResponse:
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            self.admin.authorised(lower)
            return await self._dispatch(method.upper(), route, lower, body, query)
        except Chat2ApiError as e:
            return error_response(e)

    async def _dispatch(
        self, method: str, route: str, headers: dict[str, str], body: bytes, query: str = ""
    ) -> AdminResponse:
        tail = route.removeprefix("/seedtoken").strip("/")
        if tail and method != "DELETE":
            raise NotFound(f"Unknown path {route}.")
        if method == "GET":
            seed = dict(parse_qsl(query)).get("seed")
            return await (self._one(seed) if seed else self._list())
        if method == "POST":
            return await self._create(_fields(headers, body))
        if method == "DELETE":
            fields = _fields(headers, body) if body else {}
            return await self._delete(tail or fields.get("id"), fields.get("seed"))
        raise InvalidRequest(
            f"Method {method} not allowed; use GET, POST, DELETE.",
            code="method_not_allowed",
            status=405,
        )

    async def _list(self) -> AdminResponse:
        records = await self.seeds.store.seeds()
        items = [
            _view(key, record)
            for key, record in sorted(records.items(), key=lambda kv: kv[1].created)
        ]
        # The original's shape beside today's: {"status", "data": {seed: token}}, here
        # keyed by the seed's id (seeds are stored hashed) with the token masked.
        data = {item["id"]: item["token"] or item["entry_id"] for item in items}
        return json_response(
            200, {"status": "success", "data": data, "count": len(items), "seeds": items}
        )

    async def _one(self, seed: str) -> AdminResponse:
        key = seed_key(seed)
        record = (await self.seeds.store.seeds()).get(key)
        if record is None:
            raise NotFound("Seed not found.")
        view = _view(key, record)
        data = {"seed": seed, "token": view["token"] or view["entry_id"]}
        return json_response(200, {"status": "success", "data": data, **view})

    async def _create(self, fields: dict[str, str]) -> AdminResponse:
        seed = fields.get("seed") or secrets.token_urlsafe(24)
        try:
            check_seed(seed)
        except LoginFailed as e:
            raise InvalidRequest(e.message, param="seed") from None
        if own_token(seed) is not None:
            raise InvalidRequest("A seed must not look like an access or refresh token.")
        token = (fields.get("token") or "").strip()
        try:
            if not token:
                record = SeedRecord(entry_id=await self.seeds.pick_entry())
            elif _ID.fullmatch(token):
                ids = {token_id(line) for line in await self.seeds.store.tokens()}
                if token not in ids:
                    raise NotFound(f"No pool entry with id {token}.")
                record = SeedRecord(entry_id=token)
            else:
                line = own_token(token)
                if line is None:
                    raise InvalidRequest(
                        "token: expected a pool entry id, an access token or a refresh token.",
                        param="token",
                    )
                record = SeedRecord(token=line)
        except LoginFailed as e:
            raise Chat2ApiError(e.message, status=e.status) from None
        key = seed_key(seed)
        record = SeedRecord(
            entry_id=record.entry_id, token=record.token, created=self.seeds.clock()
        )
        await self.seeds.store.put_seed(key, record)
        return json_response(
            200,
            {
                "status": "success",
                "message": "Token updated successfully",
                "seed": seed,
                **_view(key, record),
            },
        )

    async def _delete(self, seed_id: str | None, seed: str | None) -> AdminResponse:
        records = await self.seeds.store.seeds()
        if seed == "clear":  # the original's "delete them all"
            keys = list(records)
            message = "All seeds deleted successfully"
        elif seed:
            keys = [seed_key(seed)] if seed_key(seed) in records else []
            message = f"Seed '{seed}' deleted successfully"
        elif seed_id and _ID.fullmatch(seed_id):
            keys = [k for k in records if k.startswith(seed_id)]
            message = f"Seed {seed_id} deleted successfully"
        else:
            raise InvalidRequest('Give the seed\'s id in the path, or {"seed"} or {"id"}.')
        if not keys and seed != "clear":
            raise NotFound("No such seed.")
        for key in keys:
            await self.seeds.store.remove_seed(key)
        deleted = [k[:12] for k in keys]
        return json_response(200, {"status": "success", "message": message, "deleted": deleted})


def _view(key: str, record: SeedRecord) -> dict[str, Any]:
    token = None
    if record.token:
        token = mask(record.token.partition(",")[0])
    return {"id": key[:12], "entry_id": record.entry_id, "token": token, "created": record.created}


def _fields(headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    if len(body) > MAX_BODY:
        raise InvalidRequest(f"At most {MAX_BODY} bytes.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The body is not UTF-8.") from None
    kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return {k: v for k, v in parse_qsl(text) if isinstance(v, str)}
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidRequest("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("Expected a JSON object.")
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
