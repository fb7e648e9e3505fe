"""Operability on every flow chat2api answers: request ids, ``/health``,
``/ready``, ``/metrics``, CORS for the API, access lines and request metrics.

Loaded first by ``addons/chat2api.py`` (ahead of the token admin and the API),
so its ``request`` hook sets the request's id before anyone logs a line about
it (ops/requestid.py). Answers made by the other addons in their ``request``
hooks pass through ``responseheaders`` (mitmproxy emulates that hook for them),
where the id and the CORS headers are added; the access line and the metrics
are written when the answer has been sent (``response``) or has failed
(``error``). Flows passing through the HTTPS proxy to other hosts, and the
mirror's forwards to the site, are left alone.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import weakref
from dataclasses import dataclass

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ReverseMode

from errors import printable
from ops import health, requestid
from ops.cors import Cors
from ops.logs import access_line
from ops.logs import install as install_log_format
from ops.metrics import CONTENT_TYPE, METRICS, route_label
from service import runtime as rt

log = logging.getLogger("chat2api.ops")

_SECURITY = {"cache-control": "no-store", "x-content-type-options": "nosniff"}


@dataclass(slots=True)
class _Track:
    info: requestid.RequestInfo
    started: float
    kind: str  # api, admin, mirror, ops
    path: str
    cors_origin: str | None = None
    ttfb: float | None = None
    streaming: bool = False


class Ops:
    def __init__(self) -> None:
        self._flows: weakref.WeakKeyDictionary[http.HTTPFlow, _Track] = weakref.WeakKeyDictionary()
        self._cors = Cors(())
        self._cors_for: tuple[str, ...] | None = None
        self._log_format: str | None = None
        requestid.install_record_factory()

    def _settings_changed(self, runtime: rt.Runtime) -> None:
        s = runtime.settings
        if s.cors_origins != self._cors_for:
            self._cors_for = s.cors_origins
            self._cors = Cors(s.cors_origins)
        if s.log_format != self._log_format:
            self._log_format = s.log_format
            install_log_format(s.log_format)

    def running(self) -> None:
        if rt.CURRENT is not None:
            self._settings_changed(rt.CURRENT)

    def configure(self, updated: set[str]) -> None:
        if rt.CURRENT is not None:
            self._settings_changed(rt.CURRENT)

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        runtime = rt.CURRENT
        reverse = isinstance(flow.client_conn.proxy_mode, ReverseMode)
        if not reverse and (
            runtime is None
            or flow.request.pretty_host.lower() not in runtime.settings.intercept_hosts
        ):
            return  # the HTTPS proxy's pass-through traffic is not ours
        req = flow.request
        info = requestid.RequestInfo(requestid.accept(req.headers.get(requestid.HEADER)))
        requestid.CURRENT.set(info)
        path = req.path.split("?", 1)[0]
        track = _Track(info, time.monotonic(), "other", path)
        self._flows[flow] = track
        if runtime is not None:
            self._settings_changed(runtime)
            if runtime.api.owns(path):
                track.kind = "api"
                info.route = route_label(path, runtime.settings.api_root)
                track.cors_origin = req.headers.get("origin")
                if self._cors.enabled and Cors.is_preflight(req.method, req.headers):
                    info.route = "preflight"
                    flow.metadata["chat2api.ops"] = "preflight"
                    flow.response = http.Response.make(204, b"", self._cors.preflight(req.headers))
                    return
        if reverse and path in health.PATHS:
            track.kind, info.route = "ops", path
            flow.metadata["chat2api.ops"] = path
            verdict = health.health() if path == "/health" else await health.ready(runtime)
            flow.response = _json(verdict.status, verdict.body)
        elif reverse and path == "/metrics":
            track.kind, info.route = "ops", path
            flow.metadata["chat2api.ops"] = path
            flow.response = await self._metrics(runtime, req.headers.get("authorization", ""))

    async def _metrics(self, runtime: rt.Runtime | None, authorization: str) -> http.Response:
        if runtime is None:
            return _json(503, _error("chat2api is still starting", "server_error"))
        s = runtime.settings
        keys = [k for k in (s.metrics_key, s.admin_key) if k]
        if not keys:
            return _json(
                403, _error("/metrics is off: set METRICS_KEY or ADMIN_KEY.", "permission_error")
            )
        scheme, _, given = authorization.partition(" ")
        raw = given.strip().encode("utf-8", "surrogateescape")
        ok = False
        for key in keys:
            ok |= hmac.compare_digest(key.encode(), raw)
        if scheme.lower() != "bearer" or not ok:
            response = _json(
                401, _error("Missing or invalid metrics key.", "invalid_request_error")
            )
            response.headers["www-authenticate"] = "Bearer"
            return response
        try:
            async with asyncio.timeout(health.STORE_TIMEOUT):
                views = await runtime.accounts.pool.views()
            METRICS.set_pool(v.state for v in views)
        except Exception:  # noqa: BLE001 - the rest of the scrape is still worth having
            log.warning("metrics: the token pool could not be read")
        return http.Response.make(
            200, METRICS.render(), {**_SECURITY, "content-type": CONTENT_TYPE}
        )

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        track = self._flows.get(flow)
        response = flow.response
        if track is None or response is None:
            return
        if str(flow.metadata.get("chat2api.mirror", "")).startswith("forward:"):
            return  # the site's own answer, not ours
        track.ttfb = time.monotonic() - track.started
        response.headers[requestid.HEADER] = track.info.request_id
        if track.kind != "api":
            if flow.metadata.get("chat2api"):
                track.kind = "api"
            else:
                return
        if flow.metadata.get("chat2api.ops") != "preflight":
            for name, value in self._cors.simple(track.cors_origin).items():
                response.headers[name] = value
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            track.streaming = True
            METRICS.active_streams.inc()

    def response(self, flow: http.HTTPFlow) -> None:
        self._done(flow, None)

    def error(self, flow: http.HTTPFlow) -> None:
        self._done(flow, flow.error.msg if flow.error else "error")

    def _done(self, flow: http.HTTPFlow, failure: str | None) -> None:
        track = self._flows.pop(flow, None)
        if track is None:
            return
        requestid.CURRENT.set(track.info)
        duration = time.monotonic() - track.started
        if track.streaming:
            METRICS.active_streams.dec()
        info = track.info
        kind = track.kind
        if kind == "other":
            if "chat2api.admin" in flow.metadata:
                kind = "admin"
            elif "chat2api.mirror" in flow.metadata:
                kind = "mirror"
        route = info.route if kind in ("api", "ops") else kind
        status = flow.response.status_code if flow.response is not None else 0
        if failure is not None and (status == 0 or track.streaming):
            status = 499 if "client" in failure.lower() else (status or 502)
        backend = info.backend or ("web" if kind == "api" and route != "preflight" else "none")
        METRICS.request_done(route, status, backend, track.ttfb, duration)
        access_line(
            method=flow.request.method,
            path=_loggable(track.path, kind),
            route=route,
            status=status,
            backend=backend,
            account=info.account,
            ttfb=track.ttfb,
            duration=duration,
            note=printable(failure) if failure else "",
        )


def _loggable(path: str, kind: str) -> str:
    """The path for the log: no secret prefix, no token in a URL, printable."""
    runtime = rt.CURRENT
    prefix = runtime.settings.api_prefix if runtime is not None else None
    if prefix and (path == f"/{prefix}" or path.startswith(f"/{prefix}/")):
        path = "/<api_prefix>" + path[len(prefix) + 1 :]
    if "/tokens/add/" in path:
        path = path[: path.index("/tokens/add/")] + "/tokens/add/<redacted>"
    if kind == "mirror" and len(path) > 200:
        path = path[:200] + "…"
    return printable(path)


def _error(message: str, kind: str) -> dict[str, object]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _json(status: int, body: object) -> http.Response:
    data = json.dumps(body).encode()
    return http.Response.make(status, data, {**_SECURITY, "content-type": "application/json"})


# No module-level instance: addons/chat2api.py creates the one Ops addon and
# loads it first (a second one from `-s addons/ops.py` would clash by name).
addons: list[object] = []
