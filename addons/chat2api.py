"""chat2api: unmodified OpenAI API clients, answered by ChatGPT.

Run it with ``./run.sh`` or ``mitmdump -s addons/chat2api.py``. Requests to the
intercepted hosts (``INTERCEPT_HOSTS``, api.openai.com by default) on the
HTTPS-proxy listener, and every request on the reverse listener, are answered
here: ``/v1/chat/completions`` and ``/v1/models`` by ChatGPT's web backend,
``/v1/responses`` by the account's Codex backend (``service/responses.py``),
anything else with an OpenAI-style 404. Nothing is ever forwarded to the real
OpenAI with the client's key. Other hosts pass through the proxy untouched,
without TLS interception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
# Plain `mitmdump -s addons/chat2api.py` puts addons/ first on sys.path, where `mirror`
# would name addons/mirror.py rather than the mirror package: the root goes first.
if sys.path[:1] != [str(ROOT)]:
    sys.path.insert(0, str(ROOT))

from mitmproxy import connection, ctx, exceptions, http, tls  # noqa: E402
from mitmproxy.addonmanager import Loader  # noqa: E402
from mitmproxy.net.http import status_codes  # noqa: E402
from mitmproxy.proxy import mode_specs  # noqa: E402

import patches  # noqa: E402
from addons.admin import TokenAdmin  # noqa: E402
from addons.ops import OPS, TAIL  # noqa: E402
from addons.shield import Shield  # noqa: E402
from errors import (  # noqa: E402
    Chat2ApiError,
    PayloadTooLarge,
    UpstreamUnavailable,
    printable,
)
from ops.startup import log_summary  # noqa: E402
from patches import early_answer, inline_stream  # noqa: E402
from service import runtime as rt  # noqa: E402
from service.api import Reply, StreamReply, error_reply  # noqa: E402
from service.bridge import Bridge, BridgeJob  # noqa: E402
from settings import Settings, SettingsError, load_settings  # noqa: E402

log = logging.getLogger("chat2api")

DEFAULT_CONFIG = ROOT / "config.yaml"
# The reverse listener's target when chat2api answers everything itself: never dialled.
UNUSED_TARGET = "http://127.0.0.1:9"
# flow.metadata key of a streamed answer sent through the loopback bridge.
BRIDGE_TOKEN = "chat2api.bridge_token"
# After new settings, how long the previous runtime stays up for its requests.
OLD_RUNTIME_GRACE = 600.0


class Chat2Api:
    def __init__(self, admin: TokenAdmin) -> None:
        self.admin = admin
        self.runtime: rt.Runtime | None = None
        self._running = False
        self._tasks: set[asyncio.Future[None]] = set()
        self._listeners_chosen = False
        self.intercept: frozenset[str] = frozenset()
        # Per client connection: answers being worked out, and answers being
        # streamed (by flow id); both are stopped when it hangs up.
        self._working: dict[str, set[asyncio.Task[Reply | StreamReply]]] = {}
        self._streaming: dict[str, set[inline_stream.AnswerSource]] = {}
        # Without the inline_stream patch: the loopback server streamed answers go
        # through, and per client connection the ones it has not claimed yet.
        self.bridge: Bridge | None = None
        self._unclaimed: dict[str, set[str]] = {}

    def load(self, loader: Loader) -> None:
        loader.add_option(
            name="chat2api_config",
            typespec=Optional[str],  # type: ignore[arg-type]
            default=None,
            help="Path of chat2api's config.yaml (default: config.yaml next to addons/, "
            "or $CHAT2API_CONFIG). Environment variables named like its keys in upper "
            "case override it.",
        )

    def configure(self, updated: set[str]) -> None:
        if "chat2api_config" in updated or self.runtime is None:
            path = (
                ctx.options.chat2api_config or os.environ.get("CHAT2API_CONFIG") or DEFAULT_CONFIG
            )
            try:
                settings = load_settings(path, os.environ)
                runtime = rt.build_runtime(settings)
            except SettingsError as e:
                raise exceptions.OptionsError(str(e)) from None  # type: ignore[no-untyped-call]
            old = self.runtime
            if old is not None:
                log.info("settings changed; new requests use them")
            self.runtime = runtime
            rt.CURRENT = self.runtime
            if old is not None and self._running:
                task = asyncio.ensure_future(self._switch(old, self.runtime))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self.intercept = frozenset(settings.intercept_hosts)
            # Plain mitmdump installs the patches here; under the lean launcher
            # its main did already, and this changes nothing.
            wanted = settings.mitm_patches == "on"
            patches.install(enabled=wanted)
            patches.report(wanted)
            if not patches.active("inline_stream"):
                # Only then: a responseheaders hook on every flow has a cost
                # (patches/layer_shim.py answers hooks nobody handles in one pass).
                self.responseheaders = self._bridge_responseheaders
                # (and the end of a bridged answer, for its access line: addons/ops.py)
                self.response = self._bridge_done
                self.error = self._bridge_done
            for note in settings.warnings:
                log.warning("chat2api: %s", note)
            if not self._listeners_chosen:
                self._listeners_chosen = True
                self._default_listeners(settings)
        # An addon-answered request must never make mitmproxy dial the real
        # host first (docs/mitmproxy.md#lazy-connections): no connection until one is needed.
        if ctx.options.connection_strategy != "lazy":
            ctx.options.connection_strategy = "lazy"

    def _default_listeners(self, settings: Settings) -> None:
        """Plain ``mitmdump -s addons/chat2api.py``: listen where the settings say.

        Only mitmproxy's own defaults are replaced (one regular listener on
        all interfaces); modes or a listen address given on the command line win.
        """
        updates: dict[str, object] = {}
        if list(ctx.options.mode) == ["regular"] and ctx.options.listen_port is None:
            target = settings.chatgpt_base_url[0] if settings.enable_gateway else UNUSED_TARGET
            updates["mode"] = [
                f"regular@{settings.host}:{settings.proxy_port}",
                f"reverse:{target}@{settings.host}:{settings.port}",
            ]
        if not ctx.options.listen_host:
            updates["listen_host"] = settings.host
        if updates:
            ctx.options.update(**updates)  # type: ignore[no-untyped-call]

    async def running(self) -> None:
        self._running = True
        if not patches.active("inline_stream") and self.bridge is None:
            self.bridge = Bridge()
            await self.bridge.start()
        if self.runtime is not None:
            await self._start(self.runtime)

    async def _start(self, runtime: rt.Runtime) -> None:
        await runtime.start()
        settings = runtime.settings
        self.admin.set_pool(
            runtime.accounts.pool, admin_key=settings.admin_key, prefix=settings.api_prefix or ""
        )
        await log_summary(runtime)

    async def _switch(self, old: rt.Runtime, new: rt.Runtime) -> None:
        """New settings while running: start their runtime, retire the old one
        once the requests it is serving have had time to end."""
        await self._start(new)
        await asyncio.sleep(OLD_RUNTIME_GRACE)
        await old.stop()

    async def done(self) -> None:
        if self.bridge is not None:
            await self.bridge.stop()
        if self.runtime is not None:
            await self.runtime.stop()

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        # In the HTTPS-proxy mode, only the intercepted hosts are decrypted.
        if not isinstance(data.context.client.proxy_mode, mode_specs.RegularMode):
            return
        host = (data.client_hello.sni or "").lower()
        if not host and data.context.server.address:
            host = str(data.context.server.address[0]).lower()
        if host not in self.intercept:
            data.ignore_connection = True

    def _ours(self, flow: http.HTTPFlow) -> bool:
        mode = flow.client_conn.proxy_mode
        if isinstance(mode, mode_specs.ReverseMode):
            assert self.runtime is not None
            path = flow.request.path.split("?", 1)[0]
            if self.runtime.api.owns(path) or _under_prefix(path, self.runtime.settings.api_prefix):
                # (a near miss under the secret prefix, "/<prefix>//v1", is a 404 here:
                # never the mirror's, which would send the prefix upstream)
                return True
            # With the mirror on, the site's own paths belong to addons/mirror.py.
            return not self.runtime.settings.enable_gateway
        return flow.request.pretty_host.lower() in self.intercept

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Refuse before the body is read: a ``Content-Length`` over ``max_body_bytes``
        (413), a key no request could use on a route that works for one (401); a body
        without a length is cut at the limit (patches/early_answer.py)."""
        runtime = self.runtime
        if flow.response or runtime is None or not self._ours(flow):
            return
        limit = runtime.settings.max_body_bytes
        length = flow.request.headers.get("content-length", "").strip()
        error: Chat2ApiError | None = None
        if length.isdigit() and int(length) > limit:
            error = _too_large(f"{int(length)} bytes", limit)
        elif (
            runtime.api.needs_key(flow.request.method, flow.request.path.split("?", 1)[0])
            and await runtime.until_started()
        ):
            try:
                await runtime.api.check_key(
                    _header_dict(flow.request.headers.fields), refresh=False
                )
            except Chat2ApiError as e:
                error = e
        if error is not None:
            flow.metadata["chat2api"] = True
            early_answer.answer_now(flow, self._response(error_reply(error)))
            log.info(
                "%s %s -> %d before the body",
                flow.request.method,
                self._loggable(flow.request.path.split("?", 1)[0]),
                flow.response.status_code if flow.response else 0,
            )
            return
        over = self._response(error_reply(_too_large("more", limit)))
        early_answer.limit_body(flow, limit, over)

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        if self.runtime is None:
            if flow.request.pretty_host.lower() in self.intercept:
                self._reply(flow, error_reply(UpstreamUnavailable("chat2api is not configured")))
            return
        if not self._ours(flow):
            return
        flow.metadata["chat2api"] = True
        if not await self.runtime.until_started():
            self._reply(flow, error_reply(UpstreamUnavailable("chat2api is still starting")))
            return
        path = flow.request.path.split("?", 1)[0]
        shown = self._loggable(path)
        try:
            headers = _header_dict(flow.request.headers.fields)
            reply = await self._handle(flow, path, headers)
        except Exception:  # noqa: BLE001 - an escaping exception would leave the flow unanswered
            reply = error_reply(Chat2ApiError("internal error in chat2api; see its log"))
            with contextlib.suppress(Exception):  # (mitmproxy's log handler can raise)
                log.exception("chat2api failed on %s %s", flow.request.method, shown)
        if reply is None:  # the client hung up first; nobody reads this
            log.info("%s %s: the client went away, answer abandoned", flow.request.method, shown)
            reply = error_reply(Chat2ApiError("the client went away", status=499))
        if isinstance(reply, StreamReply):
            self._stream(flow, reply)
        else:
            self._reply(flow, reply)
        # (The access line, with its durations, is addons/ops.py's.)

    def _loggable(self, path: str) -> str:
        """``path`` for the log: without the secret API_PREFIX, and encodable (raw
        bytes in a request line become lone surrogates, which the log cannot print)."""
        prefix = self.runtime.settings.api_prefix if self.runtime is not None else None
        if prefix and (path == f"/{prefix}" or path.startswith(f"/{prefix}/")):
            path = "/<api_prefix>" + path[len(prefix) + 1 :]
        return printable(path)

    async def _handle(
        self, flow: http.HTTPFlow, path: str, headers: dict[str, str]
    ) -> Reply | StreamReply | None:
        """The API's answer; None when the client hangs up before it is ready.

        mitmproxy does not cancel a hook when its client goes away, so without
        this a backend call would run to its end for nobody (``client_disconnected``
        cancels it, which closes its backend stream).
        """
        assert self.runtime is not None
        client = flow.client_conn
        if client.timestamp_end is not None:  # gone already
            return None
        task = asyncio.ensure_future(
            self.runtime.api.handle(
                flow.request.method, path, headers, flow.request.raw_content or b""
            )
        )
        working = self._working.setdefault(client.id, set())
        working.add(task)
        try:
            await asyncio.wait({task})
        finally:
            working.discard(task)
            if not working:
                self._working.pop(client.id, None)
            if not task.done():
                task.cancel()
        if task.cancelled():
            return None
        reply = task.result()
        if client.timestamp_end is not None and isinstance(reply, StreamReply):
            # The client left as the answer was ready: nobody will claim it.
            aclose = getattr(reply.body, "aclose", None)
            if aclose is not None:
                await aclose()
            return None
        return reply

    async def client_disconnected(self, client: connection.Client) -> None:
        for task in self._working.pop(client.id, ()):
            task.cancel()
        for source in self._streaming.pop(client.id, ()):
            inline_stream.detach(source.flow_id)
            await source.close()
        for token in self._unclaimed.pop(client.id, ()):
            if self.bridge is not None:
                self.bridge.drop(token)

    def _reply(self, flow: http.HTTPFlow, reply: Reply) -> None:
        flow.response = self._response(reply)

    @staticmethod
    def _response(reply: Reply) -> http.Response:
        return http.Response.make(reply.status, reply.body, reply.headers)

    def _stream(self, flow: http.HTTPFlow, reply: StreamReply) -> None:
        if self.bridge is not None:
            self._bridge(flow, reply, self.bridge)
            return
        # (Not Response.make: its type checks and content-length bookkeeping
        # cost more than the rest of this method, for a body sent elsewhere.)
        now = time.time()
        flow.response = http.Response(
            b"HTTP/1.1",
            reply.status,
            status_codes.RESPONSES.get(reply.status, "").encode(),
            http.Headers([(k.encode(), v.encode()) for k, v in reply.headers.items()]),
            b"",
            None,
            now,
            now,
        )
        source = inline_stream.AnswerSource(
            reply.body, flow.id, flow.client_conn.id, on_end=self._stream_ended
        )
        inline_stream.attach(flow, source)
        self._streaming.setdefault(flow.client_conn.id, set()).add(source)
        flow.metadata.update({f"chat2api.{k}": v for k, v in reply.metadata.items()})
        # Translating starts now, while mitmproxy works through the response's hooks.
        source.start()

    def _bridge(self, flow: http.HTTPFlow, reply: StreamReply, bridge: Bridge) -> None:
        """Stock mitmproxy streams only what it reads from a server: re-target the
        flow at the loopback bridge, which serves this answer once (service/bridge.py)."""
        url = bridge.register(
            BridgeJob(status=reply.status, headers=reply.headers, body=reply.body)
        )
        token = url.rsplit("/", 1)[1]
        flow.metadata[BRIDGE_TOKEN] = token
        flow.metadata.update({f"chat2api.{k}": v for k, v in reply.metadata.items()})
        self._unclaimed.setdefault(flow.client_conn.id, set()).add(token)
        # The client's key must not travel further, not even over loopback.
        flow.request.headers.pop("authorization", None)
        flow.request.url = url
        flow.request.content = b""

    def _bridge_responseheaders(self, flow: http.HTTPFlow) -> None:
        """``responseheaders`` when answers go through the bridge: stream them."""
        token = flow.metadata.get(BRIDGE_TOKEN)
        if token is None or flow.response is None:
            return
        flow.response.stream = True
        unclaimed = self._unclaimed.get(flow.client_conn.id)
        if unclaimed is not None:
            unclaimed.discard(token)
            if not unclaimed:
                del self._unclaimed[flow.client_conn.id]
        if self.bridge is not None:
            self.bridge.forwarded(token)
        OPS.answered(flow, streaming=True)

    def _bridge_done(self, flow: http.HTTPFlow) -> None:
        if BRIDGE_TOKEN in flow.metadata:
            OPS.finished(flow, flow.error.msg if flow.error else None)

    def _stream_ended(self, source: inline_stream.AnswerSource) -> None:
        OPS.stream_ended(source.flow_id, source.failure)
        streams = self._streaming.get(source.client_id)
        if streams is not None:
            streams.discard(source)
            if not streams:
                del self._streaming[source.client_id]

    async def chat2api_next_pieces(self, source: inline_stream.AnswerSource) -> None:
        """Wait for a streamed answer's next batch, for mitmproxy's HTTP layer
        (patches/inline_stream.py)."""
        await source.wait()


def _header_dict(fields: tuple[tuple[bytes, bytes], ...]) -> dict[str, str]:
    """The request's headers by lower-case name, repeated ones joined with ", "
    (what ``Headers.items(multi=False)`` gives, without a lookup per name)."""
    out: dict[str, str] = {}
    for raw_name, raw_value in fields:
        name = raw_name.decode("utf-8", "surrogateescape").lower()
        value = raw_value.decode("utf-8", "surrogateescape")
        seen = out.get(name)
        out[name] = value if seen is None else f"{seen}, {value}"
    return out


def _under_prefix(path: str, prefix: str | None) -> bool:
    """Whether ``path`` starts with the API prefix, however many slashes lead."""
    if not prefix:
        return False
    first = path.lstrip("/").split("/", 1)[0]
    return first == prefix or unquote(first) == prefix


def _too_large(size: str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Request body too large: {size}, the limit is {limit} bytes (max_body_bytes).",
        param=None,
    )


_admin = TokenAdmin()
# The shield goes first (addons/shield.py: refusals before anything runs); then the
# ops addon (request ids, /health, /ready, /metrics, CORS) and the admin addon: on
# the reverse listener chat2api answers every path it does not own with a 404, so
# /tokens must be taken before that. The ops tail goes last: it sees the answers
# the others made in the request pass (addons/ops.py).
addons = [Shield(), OPS, _admin, Chat2Api(_admin), TAIL]
