"""The first addon on every listener: what is refused before anything else runs.

Loaded by ``addons/chat2api.py`` ahead of its own addons (and so ahead of the
mirror); the decisions are :mod:`service.shield`'s. README "Security" lists the
attacks these answer:

* a client address with ``connections_per_address`` connections open gets no more;
* a connection without a complete request head for ``header_timeout`` seconds
  (at its start, or after its last request ended) is closed;
* header values with control characters, and request lines with raw bytes that
  are not ASCII, are a 400 before the body is read (:mod:`patches.early_answer`);
* on the HTTPS-proxy listener: ``proxy_auth`` (a 407 with ``Proxy-Authenticate``),
  and no ``CONNECT``, absolute-form request or connection to a loopback, private
  or link-local address or to the proxy's own listeners unless listed in
  ``proxy_allow_hosts`` (a 403; ``server_connect`` checks again, and connects to
  the address it checked).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from mitmproxy import connection, ctx, http, tls
from mitmproxy.proxy import mode_specs, server_hooks

from errors import Chat2ApiError, InvalidRequest, PermissionDenied, ProxyAuthRequired
from patches import early_answer
from service import bridge
from service import runtime as rt
from service.api import error_reply
from service.shield import (
    ConnectionBook,
    Destinations,
    ProxyCredentials,
    header_problem,
    mask_in_logs,
    mask_text,
    target_problem,
)
from settings import Settings

log = logging.getLogger("chat2api.shield")


# How often idle connections are looked for (the timeout's resolution).
_SWEEP_SECONDS = 1.0


def _regular(client: connection.Client) -> bool:
    return isinstance(client.proxy_mode, mode_specs.RegularMode)


def _refusal(error: Chat2ApiError) -> http.Response:
    reply = error_reply(error)
    return http.Response.make(reply.status, reply.body, reply.headers)


class Shield:
    def __init__(self) -> None:
        self.book = ConnectionBook(per_address=256, header_timeout=10.0)
        self._settings: Settings | None = None
        self._destinations: Destinations | None = None
        self._credentials: ProxyCredentials | None = None
        self._authenticated: set[str] = set()
        # Destinations already checked for a client connection, with the address to
        # use: server_connect then neither resolves nor checks again.
        self._checked: dict[str, dict[tuple[str, int], str | None]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # -- settings ----------------------------------------------------------------
    def _current(self) -> Settings | None:
        runtime = rt.CURRENT
        settings = runtime.settings if runtime is not None else None
        if settings is not None and settings is not self._settings:
            self._settings = settings
            self.book.per_address = settings.connections_per_address
            self.book.header_timeout = settings.header_timeout
            self._destinations = Destinations(
                allow=settings.proxy_allow_hosts,
                intercept=settings.intercept_hosts,
                listener_ports=_listener_ports,
            )
            self._credentials = (
                ProxyCredentials(settings.proxy_auth) if settings.proxy_auth else None
            )
            mask_in_logs(settings.api_prefix)
        return settings

    def configure(self, updated: set[str]) -> None:
        self._current()

    async def running(self) -> None:
        self._current()
        _mask_flow_dump()
        self._sweeper = asyncio.ensure_future(self._sweep())

    async def done(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()

    # -- connections -------------------------------------------------------------
    def client_connected(self, client: connection.Client) -> None:
        self._current()
        address = str(client.peername[0]) if client.peername else "?"
        if not self.book.opened(client.id, address):
            client.error = "too many connections from this address"
            log.warning(
                "refused a connection from %s: it has %d open (connections_per_address)",
                address,
                self.book.per_address,
            )

    def client_disconnected(self, client: connection.Client) -> None:
        self.book.closed(client.id)
        self._authenticated.discard(client.id)
        self._checked.pop(client.id, None)

    def tls_start_client(self, data: tls.TlsData) -> None:
        # A CONNECT tunnel chat2api decrypts carries HTTP requests again.
        self.book.exempt(data.context.client.id, False)

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        self.book.exempt(flow.client_conn.id)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
            for conn_id in self.book.overdue():
                self.book.exempt(conn_id)  # once
                log.info(
                    "closed a connection without a complete request head for %g s "
                    "(header_timeout)",
                    self.book.header_timeout,
                )
                _close(conn_id)

    # -- requests ----------------------------------------------------------------
    async def http_connect(self, flow: http.HTTPFlow) -> None:
        self._current()
        if not self._authorised(flow):
            return
        await self._check_destination(flow)
        if flow.response is None:
            # What follows is a tunnel, unless its TLS is intercepted (tls_start_client).
            self.book.exempt(flow.client_conn.id)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        self._current()
        self.book.request(flow.client_conn.id, flow)
        if flow.response is not None:
            return
        problem = target_problem(flow.request.data.path) or header_problem(
            flow.request.headers.fields
        )
        if problem is not None:
            early_answer.answer_now(flow, _refusal(InvalidRequest(problem, code="invalid_request")))
            return
        if not _regular(flow.client_conn):
            return
        passing = flow.request.pretty_host.lower() not in self._intercept()
        if self._authorised(flow) and passing:
            await self._check_destination(flow)
        if flow.response is not None:
            early_answer.answer_now(flow, flow.response)
        elif passing:
            # Not chat2api's: the body goes on as it comes, never whole in memory.
            flow.request.stream = True

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if not _regular(data.client) or data.server.address is None or data.server.error:
            return
        destinations = self._destinations
        if destinations is None:
            return
        host, port = str(data.server.address[0]), int(data.server.address[1])
        if (host, port) in bridge.LISTENING:
            return  # chat2api's own loopback bridge (MITM_PATCHES=off), not a client's pick
        checked = self._checked.get(data.client.id, {})
        if (host, port) in checked:
            pinned = checked[(host, port)]
            if pinned is not None:
                data.server.address = (pinned, port)
            return
        verdict = await destinations.check(host, port)
        if verdict.refused is not None:
            log.warning("refused a proxy connection to %s:%d: %s", host, port, verdict.refused)
            data.server.error = f"refused by chat2api: {verdict.refused}"
        elif verdict.address is not None:
            data.server.address = (verdict.address, port)  # the address that was checked

    def _intercept(self) -> frozenset[str]:
        settings = self._settings
        return frozenset(settings.intercept_hosts) if settings is not None else frozenset()

    def _authorised(self, flow: http.HTTPFlow) -> bool:
        """``proxy_auth`` on the HTTPS-proxy listener; sets a 407 when missing."""
        credentials = self._credentials
        client = flow.client_conn
        if credentials is None or client.id in self._authenticated:
            return True
        if credentials.valid(flow.request.headers.get("proxy-authorization")):
            self._authenticated.add(client.id)
            flow.request.headers.pop("proxy-authorization", None)
            return True
        flow.response = _refusal(ProxyAuthRequired("Proxy authentication required (proxy_auth)."))
        return False

    async def _check_destination(self, flow: http.HTTPFlow) -> None:
        destinations = self._destinations
        if destinations is None:
            return
        host, port = flow.request.host, flow.request.port
        verdict = await destinations.check(host, port)
        if verdict.refused is None:
            self._checked.setdefault(flow.client_conn.id, {})[(host, port)] = verdict.address
        else:
            log.warning("refused a proxy request to %s:%d: %s", host, port, verdict.refused)
            flow.response = _refusal(
                PermissionDenied(
                    f"This proxy does not connect there: {verdict.refused}",
                    code="destination_refused",
                )
            )


class _MaskingOut:
    """mitmdump's flow dump (``flow_detail``) writes to a file, not to the log:
    the API prefix is masked on the way there too."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        return int(self._inner.write(mask_text(text)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _mask_flow_dump() -> None:
    with contextlib.suppress(Exception):
        dumper = ctx.master.addons.get("dumper")  # type: ignore[no-untyped-call]
        if dumper is not None and not isinstance(dumper.outfp, _MaskingOut):
            dumper.outfp = _MaskingOut(dumper.outfp)


def _listener_ports() -> list[int]:
    with contextlib.suppress(Exception):
        server = ctx.master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
        return [int(addr[1]) for addr in server.listen_addrs()]
    return []


def _close(conn_id: str) -> None:
    """Close a client connection now (what mitmproxy's own inactivity timeout does)."""
    with contextlib.suppress(Exception):
        server = ctx.master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
        handler = server.connections.get(conn_id)
        if handler is not None:
            io = handler.transports.get(handler.client)
            if io is not None and io.handler is not None:
                io.handler.cancel("header timeout")
