"""Token management on the reverse listener: ``/tokens`` and ``/tokens/api/…``.

Answers the routes of :mod:`accounts.admin` (also under ``/<admin_prefix>``)
only for flows that arrived on a reverse-proxy listener; traffic through the
HTTPS proxy listener never reaches them.

Wiring: ``addons/chat2api.py`` loads this addon ahead of its own and hands it
the process's shared :class:`accounts.pool.Pool` with the admin key and prefix
from the settings (:meth:`TokenAdmin.set_pool`). Until then the page is served
and the API answers 503.
"""

from __future__ import annotations

import logging

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ReverseMode

from accounts.admin import AdminApi, AdminResponse, admin_route, error_response, page_response
from accounts.pool import Pool
from errors import Chat2ApiError, UpstreamUnavailable

log = logging.getLogger(__name__)


class TokenAdmin:
    def __init__(self, pool: Pool | None = None) -> None:
        self.api: AdminApi | None = AdminApi(pool) if pool is not None else None
        self.key = ""
        self.prefix = ""

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

    async def _answer(self, flow: http.HTTPFlow) -> AdminResponse:
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


# No module-level instance: addons/chat2api.py creates the one TokenAdmin and
# loads it ahead of itself. A second one from `-s addons/admin.py` would clash
# with it by name ("An addon called 'tokenadmin' already exists") and stop
# mitmdump at start-up, so loading this file as a script is a harmless no-op.
addons: list[object] = []
