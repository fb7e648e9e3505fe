"""Token management on the reverse listener: ``/tokens`` and ``/tokens/api/…``, the
original's ``/tokens/upload|clear|error`` and ``/seed_tokens/clear``
(accounts/legacy.py), and ``/auth/refresh`` (accounts/authrefresh.py).

Answers the routes of :mod:`accounts.admin` (also under ``/<admin_prefix>``)
only for flows that arrived on a reverse-proxy listener; traffic through the
HTTPS proxy listener never reaches them.

Wiring: ``addons/chat2api.py`` loads this addon ahead of its own and hands it
the process's shared :class:`accounts.pool.Pool` with the admin key and prefix
from the settings (:meth:`TokenAdmin.set_pool`). Until then the page is served
and the API answers 503.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ReverseMode

from accounts.admin import (
    AdminApi,
    AdminResponse,
    admin_route,
    error_response,
    json_response,
    page_response,
)
from accounts.authrefresh import AuthRefresh, RefreshConfig
from accounts.legacy import form_fields
from accounts.pool import Pool
from errors import Chat2ApiError, InvalidRequest, UpstreamUnavailable
from service import runtime as rt

log = logging.getLogger(__name__)


class TokenAdmin:
    def __init__(self, pool: Pool | None = None) -> None:
        self.api: AdminApi | None = AdminApi(pool) if pool is not None else None
        self.key = ""
        self.prefix = ""
        self._refresh: tuple[rt.Runtime, AuthRefresh] | None = None

    def set_pool(self, pool: Pool, *, admin_key: str | None = None, prefix: str = "") -> None:
        """Serve ``pool``; the key and prefix come from chat2api's settings
        (``ADMIN_KEY``, ``API_PREFIX``)."""
        self.key, self.prefix = admin_key or "", prefix
        self.api = AdminApi(pool, admin_key=admin_key, prefix=prefix)

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        if not isinstance(flow.client_conn.proxy_mode, ReverseMode):
            return  # never on the HTTPS proxy listener
        route = admin_route(flow.request.path, self.prefix)
        if route is None:
            return
        flow.metadata["chat2api.admin"] = route
        try:
            answer = await self._answer(flow)
        except Exception:
            log.exception("admin route %s failed", route)
            answer = error_response(Chat2ApiError("Internal error in the admin API."))
        flow.response = http.Response.make(answer.status, answer.body, answer.headers)
        if route.startswith("/tokens/add"):  # refused; keep the token out of flow logs too
            path = flow.request.path
            flow.request.path = path[: path.index("/tokens/add")] + "/tokens/add/<redacted>"

    async def _answer(self, flow: http.HTTPFlow) -> AdminResponse:
        if flow.metadata["chat2api.admin"] == "/auth/refresh":
            try:
                return await self._auth_refresh(flow)
            except Chat2ApiError as e:
                return error_response(e)
        if self.api is None:
            if flow.metadata["chat2api.admin"] == "/tokens":
                return page_response(head=flow.request.method == "HEAD")
            return error_response(UpstreamUnavailable("The token pool is not ready yet."))
        req = flow.request
        body = req.get_content(strict=False) or b""
        answer = await self.api.handle(req.method, req.path, req.headers, body)
        if answer is None:  # the prefixes disagree; cannot happen when configured together
            raise RuntimeError("admin route not recognised")
        return answer

    async def _auth_refresh(self, flow: http.HTTPFlow) -> AdminResponse:
        """``POST /auth/refresh`` for Chat-Share (accounts/authrefresh.py)."""
        runtime = rt.CURRENT
        if self.api is None or runtime is None:
            raise UpstreamUnavailable("chat2api is still starting.")
        if self._refresh is None or self._refresh[0] is not runtime:
            self._refresh = (runtime, _make_auth_refresh(runtime))
        handler = self._refresh[1]
        req = flow.request
        if req.method != "POST":
            raise InvalidRequest("Use POST.", code="method_not_allowed", status=405)
        api = self.api
        headers = {k.lower(): v for k, v in req.headers.items()}  # type: ignore[no-untyped-call]
        client = str(flow.client_conn.peername[0]) if flow.client_conn.peername else "?"
        handler.admit(lambda: api.authorised(headers), client)
        body = req.get_content(strict=False) or b""
        fields = form_fields(headers.get("content-type", ""), body)
        return json_response(200, await handler.handle(fields))


def _make_auth_refresh(runtime: rt.Runtime) -> AuthRefresh:
    s = runtime.settings
    http_ = runtime.http

    async def get_json(url: str, access_token: str) -> tuple[int, Any]:
        answer = await http_.request(
            "GET",
            url,
            headers={"authorization": f"Bearer {access_token}", "accept": "*/*"},
            impersonate="chrome",
            timeout=30.0,
            proxy=http_.pick_proxy(),
        )
        try:
            return answer.status, json.loads(answer.body)
        except ValueError:
            return answer.status, None

    config = RefreshConfig(
        token_url=s.refresh_url,
        client_id=s.refresh_client_id,
        redirect_uri=s.refresh_redirect_uri,
        origin=s.chatgpt_base_url[0],
        open=s.auth_refresh_open,
        per_minute=s.auth_refresh_per_minute,
    )
    return AuthRefresh(config, runtime.accounts.post_json, get_json)


# No module-level instance: addons/chat2api.py creates the one TokenAdmin and
# loads it ahead of itself. A second one from `-s addons/admin.py` would clash
# with it by name ("An addon called 'tokenadmin' already exists") and stop
# mitmdump at start-up, so loading this file as a script is a harmless no-op.
addons: list[object] = []
