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

ROOT = Path(__file__).resolve().parent.parent
# Plain `mitmdump -s addons/chat2api.py` puts addons/ first on sys.path, where `mirror`
# would name addons/mirror.py rather than the mirror package: the root goes first.
if sys.path[:1] != [str(ROOT)]:
    sys.path.insert(0, str(ROOT))

from mitmproxy import connection, ctx, exceptions, http, tls  # noqa: E402
from mitmproxy.addonmanager import Loader  # noqa: E402
from mitmproxy.net.http import status_codes  # noqa: E402
from mitmproxy.proxy import mode_specs  # noqa: E402

from addons import inline_stream  # noqa: E402
from addons.admin import TokenAdmin  # noqa: E402
from errors import Chat2ApiError, UpstreamUnavailable, printable  # noqa: E402
from service import runtime as rt  # noqa: E402
from service.api import Reply, StreamReply, error_reply  # noqa: E402
from settings import Settings, SettingsError, load_settings  # noqa: E402
from settings.load import describe  # noqa: E402

log = logging.getLogger("chat2api")

DEFAULT_CONFIG = ROOT / "config.yaml"
# The reverse listener's target when chat2api answers everything itself: never dialled.
UNUSED_TARGET = "http://127.0.0.1:9"

inline_stream.install()
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
            except SettingsError as e:
                raise exceptions.OptionsError(str(e)) from None  # type: ignore[no-untyped-call]
            old = self.runtime
            if old is not None:
                log.info("settings changed; new requests use them")
            self.runtime = rt.build_runtime(settings)
            rt.CURRENT = self.runtime
            if old is not None and self._running:
                task = asyncio.ensure_future(self._switch(old, self.runtime))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self.intercept = frozenset(settings.intercept_hosts)
            log.info("chat2api settings: %s", describe(settings))
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
        if self.runtime is not None:
            await self._start(self.runtime)

    async def _start(self, runtime: rt.Runtime) -> None:
        await runtime.start()
        settings = runtime.settings
        self.admin.set_pool(
            runtime.accounts.pool, admin_key=settings.admin_key, prefix=settings.api_prefix or ""
        )

    async def _switch(self, old: rt.Runtime, new: rt.Runtime) -> None:
        """New settings while running: start their runtime, retire the old one
        once the requests it is serving have had time to end."""
        await self._start(new)
        await asyncio.sleep(OLD_RUNTIME_GRACE)
        await old.stop()

    async def done(self) -> None:
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
            if self.runtime.api.owns(flow.request.path.split("?", 1)[0]):
                return True
            # With the mirror on, the site's own paths belong to addons/mirror.py.
            return not self.runtime.settings.enable_gateway
        return flow.request.pretty_host.lower() in self.intercept

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
        started = time.monotonic()
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
        log.info(
            "%s %s -> %d%s in %.0f ms",
            flow.request.method,
            shown,
            reply.status,
            " (streaming)" if isinstance(reply, StreamReply) else "",
            (time.monotonic() - started) * 1000,
        )

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

    def _reply(self, flow: http.HTTPFlow, reply: Reply) -> None:
        flow.response = http.Response.make(reply.status, reply.body, reply.headers)

    def _stream(self, flow: http.HTTPFlow, reply: StreamReply) -> None:
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

    def _stream_ended(self, source: inline_stream.AnswerSource) -> None:
        streams = self._streaming.get(source.client_id)
        if streams is not None:
            streams.discard(source)
            if not streams:
                del self._streaming[source.client_id]

    async def chat2api_next_pieces(self, source: inline_stream.AnswerSource) -> None:
        """Wait for a streamed answer's next batch, for mitmproxy's HTTP layer (inline_stream)."""
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


_admin = TokenAdmin()
# The admin addon goes first: on the reverse listener chat2api answers every
# path it does not own with a 404, so /tokens must be taken before that.
addons = [_admin, Chat2Api(_admin)]
