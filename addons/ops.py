"""Operability on every flow chat2api answers: request ids, ``/health``,
``/ready``, ``/metrics``, CORS for the API, access lines and request metrics.

Without a hook of its own after ``request``: chat2api's lean master answers
flow hooks nobody listens to in the same pass (patches/layer_shim.py), and a
``responseheaders`` or ``response`` method here would cost every request more
trips through the loop. So:

* :class:`Ops` goes right after the shield in ``requestheaders`` and ``request``
  (hooks the shield and the API listen to anyway): it gives the request its id
  before anyone logs a line about it (ops/requestid.py) and answers ``/health``,
  ``/ready``, ``/metrics`` and CORS preflights itself;
* :class:`OpsTail` goes last in both passes: an answer the API made before the
  body was read (a 401, a 413), or the token admin or the API made in
  ``request``, gets its ``x-request-id`` (and, on the API, the CORS headers)
  before it leaves, and is counted and logged at once or, for a streamed answer,
  when its stream ends (:meth:`Ops.stream_ended`, called by ``addons/chat2api.py``);
* the mirror, loaded later, reports its own answers (:meth:`Ops.answered`) and
  the end of the ones it forwards (:meth:`Ops.finished`) from hooks it has anyway.

Flows passing through the HTTPS proxy to other hosts are left alone.
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
from patches import inline_stream
from service import runtime as rt

log = logging.getLogger("chat2api.ops")

_SECURITY = {"cache-control": "no-store", "x-content-type-options": "nosniff"}


@dataclass(slots=True)
class _Track:
    info: requestid.RequestInfo
    started: float
    kind: str  # api, admin, mirror, ops, other
    path: str
    reverse: bool
    cors_origin: str | None = None
    ttfb: float | None = None
    streaming: bool = False


class Ops:
    def __init__(self) -> None:
        # Weakly: a flow nobody here answers (the mirror's forwards, say) just goes.
        self._flows: weakref.WeakKeyDictionary[http.HTTPFlow, _Track] = weakref.WeakKeyDictionary()
        self._streams: dict[str, http.HTTPFlow] = {}
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

    def _start(self, flow: http.HTTPFlow) -> _Track | None:
        """Give the request its id and start its clock; None when it is not ours."""
        runtime = rt.CURRENT
        reverse = isinstance(flow.client_conn.proxy_mode, ReverseMode)
        if not reverse and (
            runtime is None
            or flow.request.pretty_host.lower() not in runtime.settings.intercept_hosts
        ):
            return None  # the HTTPS proxy's pass-through traffic is not ours
        req = flow.request
        info = requestid.RequestInfo(requestid.accept(req.headers.get(requestid.HEADER)))
        track = _Track(info, time.monotonic(), "other", req.path.split("?", 1)[0], reverse)
        self._flows[flow] = track
        if runtime is not None:
            self._settings_changed(runtime)
            if runtime.api.owns(track.path):
                track.kind = "api"
                info.route = route_label(track.path, runtime.settings.api_root)
                track.cors_origin = req.headers.get("origin")
        return track

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # (The shield and the API listen to this hook anyway: no extra trip per request.)
        track = self._start(flow)
        if track is None:
            return
        requestid.CURRENT.set(track.info)
        if flow.response is not None:  # refused by the shield, just before
            self.answered(flow)
            self.finished(flow)

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        track = self._flows.get(flow) or self._start(flow)
        if track is None:
            return
        info = track.info
        requestid.CURRENT.set(info)
        req, path = flow.request, track.path
        if (
            track.kind == "api"
            and self._cors.enabled
            and Cors.is_preflight(req.method, req.headers)
        ):
            info.route = "preflight"
            flow.metadata["chat2api.ops"] = "preflight"
            self._own(flow, http.Response.make(204, b"", self._cors.preflight(req.headers)))
        elif track.reverse and path in health.PATHS:
            track.kind, info.route = "ops", path
            flow.metadata["chat2api.ops"] = path
            verdict = health.health() if path == "/health" else await health.ready(rt.CURRENT)
            self._own(flow, _json(verdict.status, verdict.body))
        elif track.reverse and path == "/metrics":
            track.kind, info.route = "ops", path
            flow.metadata["chat2api.ops"] = path
            authorization = req.headers.get("authorization", "")
            self._own(flow, await self._metrics(rt.CURRENT, authorization))

    def _own(self, flow: http.HTTPFlow, response: http.Response) -> None:
        flow.response = response
        self.answered(flow)
        self.finished(flow)

    async def _metrics(self, runtime: rt.Runtime | None, authorization: str) -> http.Response:
        if runtime is None:
            return _json(503, _error("chat2api is still starting", "server_error"))
        s = runtime.settings
        keys = [k for k in (s.metrics_key, s.admin_key) if k]
        if not keys:
            message = "/metrics is off: set METRICS_KEY or ADMIN_KEY."
            return _json(403, _error(message, "permission_error"))
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

    # -- answers made here and by the other addons ----------------------------------
    def answered(self, flow: http.HTTPFlow, *, streaming: bool = False) -> None:
        """``flow.response`` was just made by chat2api: add the id (and, on the API,
        the CORS headers) and take the time to its head."""
        track = self._flows.get(flow)
        response = flow.response
        if track is None or response is None or track.ttfb is not None:
            return
        track.ttfb = time.monotonic() - track.started
        headers = response.headers
        headers[requestid.HEADER] = track.info.request_id
        if track.kind == "other" and flow.metadata.get("chat2api"):
            track.kind = "api"
        if track.kind == "api" and track.cors_origin and self._cors.enabled:
            if flow.metadata.get("chat2api.ops") != "preflight":
                for name, value in self._cors.simple(track.cors_origin).items():
                    headers[name] = value
        if streaming:
            track.streaming = True
            self._streams[flow.id] = flow
            METRICS.active_streams.inc()

    def stream_ended(self, flow_id: str, failure: str | None) -> None:
        """A streamed answer's body ended (addons/chat2api.py)."""
        flow = self._streams.pop(flow_id, None)
        if flow is not None:
            self.finished(flow, failure)

    def finished(self, flow: http.HTTPFlow, failure: str | None = None) -> None:
        """The answer is complete (or failed): count it and write its access line."""
        track = self._flows.pop(flow, None)
        if track is None:
            return
        if track.streaming:
            self._streams.pop(flow.id, None)
        token = requestid.CURRENT.set(track.info)
        try:
            self._account(flow, track, failure)
        finally:
            requestid.CURRENT.reset(token)

    def _account(self, flow: http.HTTPFlow, track: _Track, failure: str | None) -> None:
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
            note=printable(failure) if failure else _note(flow, kind),
        )


class OpsTail:
    """Last in the ``request`` pass of addons/chat2api.py: see the module docstring."""

    def __init__(self, ops: Ops) -> None:
        self.ops = ops

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # An answer made before the body was read (a 401 for a bad key, a 413).
        if flow.response is not None:
            self.ops.answered(flow)
            self.ops.finished(flow)

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is None or flow.error:
            return
        streaming = inline_stream.is_attached(flow.id)
        self.ops.answered(flow, streaming=streaming)
        if not streaming:
            self.ops.finished(flow)


def _note(flow: http.HTTPFlow, kind: str) -> str:
    """Why the mirror answered as it did (its reason, or where it forwarded to)."""
    if kind != "mirror":
        return ""
    return str(flow.metadata.get("chat2api.mirror", ""))


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


# The process's one instance: addons/chat2api.py loads it first and its tail
# last; addons/mirror.py reports its answers to it. Loading this file as a
# script adds nothing (a second Ops would clash by name).
OPS = Ops()
TAIL = OpsTail(OPS)
addons: list[object] = []
