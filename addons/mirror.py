"""The ChatGPT site mirror on the reverse listener (``ENABLE_GATEWAY``).

Load it after ``addons/chat2api.py`` (``run.sh`` does): the API paths and ``/tokens``
are answered there first, and this addon takes every other request on the reverse
listener. The decisions come from :mod:`mirror` (login, seeds, bans, ownership,
rewriting); this addon applies them to flows:

* a local answer becomes ``flow.response``;
* a forward re-targets the flow (``flow.request.url`` in one go) with the rewritten
  headers, so mitmproxy itself talks to the upstream;
* ``responseheaders`` rewrites the answer's headers and streams everything that is
  not rewritten: event streams pass through unbuffered (a seed's new conversation is
  recorded on the way, docs/mitmproxy.md#empty-stream-chunks), binary bodies too;
* ``response`` rewrites host names in text bodies and filters a seed's
  conversation list (failing closed: an unreadable list is a 502, never the list).

``keep_host_header`` is turned on so the browser's ``Host`` (the gateway's origin)
is known; every flow here is re-targeted or answered, so nothing is sent with it.
"""

from __future__ import annotations

import json
import logging
import sys
import weakref
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Plain `mitmdump -s addons/mirror.py` puts addons/ first on sys.path, where `mirror`
# would name addons/mirror.py rather than the mirror package: the root goes first.
if sys.path[:1] != [str(ROOT)]:
    sys.path.insert(0, str(ROOT))

from mitmproxy import ctx, http  # noqa: E402
from mitmproxy.proxy.mode_specs import ReverseMode  # noqa: E402

from addons.ops import OPS  # noqa: E402
from mirror import build_gateway  # noqa: E402
from mirror.recorder import ConversationIdScanner  # noqa: E402
from mirror.rewrite import is_event_stream, media_type, rewritable  # noqa: E402
from mirror.router import Answer, Forward, Gateway, MirrorRequest, json_answer  # noqa: E402
from mirror.seeds import Seeds  # noqa: E402
from mirror.sentinel import dialect_runner  # noqa: E402
from service import runtime as rt  # noqa: E402

log = logging.getLogger("chat2api.mirror")

TAG = "chat2api.mirror"


def _fields(headers: http.Headers) -> list[tuple[str, str]]:
    return list(headers.items(multi=True))  # type: ignore[no-untyped-call]


def _headers(fields: list[tuple[str, str]]) -> http.Headers:
    raw = [
        (k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape"))
        for k, v in fields
    ]
    return http.Headers(raw)


def recorder(seeds: Seeds, owner: str) -> Callable[[bytes], list[bytes]]:
    """A stream callable that passes every chunk through unchanged and notes the
    conversation id for ``owner``. It never returns ``b""`` (that would end an
    HTTP/1.1 body early) and never raises (that would hang the client)."""
    scanner = ConversationIdScanner()

    def stream(data: bytes) -> list[bytes]:
        if not data:
            return []
        try:
            cid = scanner.feed(data)
            if cid is not None:
                seeds.note(owner, cid)
        except Exception:  # noqa: BLE001 - the answer must keep flowing
            log.exception("could not record a conversation id")
        return [data]

    return stream


class Mirror:
    def __init__(self) -> None:
        self.gateway: Gateway | None = None
        self._runtime: rt.Runtime | None = None
        self._forwards: weakref.WeakKeyDictionary[http.HTTPFlow, Forward] = (
            weakref.WeakKeyDictionary()
        )

    def configure(self, updated: set[str]) -> None:
        runtime = rt.CURRENT
        if runtime is not None and runtime.settings.enable_gateway:
            if not ctx.options.keep_host_header:
                ctx.options.keep_host_header = True

    def _active(self) -> Gateway | None:
        runtime = rt.CURRENT
        if runtime is None or not runtime.settings.enable_gateway:
            return None
        if runtime is not self._runtime:  # first use, or the settings changed
            self._runtime = runtime
            accounts = runtime.accounts
            runner = None
            if runtime.settings.no_sentinel and runtime.dialect and runtime.context_for:
                runner = dialect_runner(runtime.dialect, runtime.http, runtime.context_for)
            self.gateway = build_gateway(
                runtime.settings, accounts.store, accounts.pool, sentinel=runner
            )
        return self.gateway

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        if not isinstance(flow.client_conn.proxy_mode, ReverseMode):
            return
        if flow.metadata.get("chat2api") or "chat2api.admin" in flow.metadata:
            return  # the API and the token admin own these
        gateway = self._active()
        if gateway is None:
            return
        runtime = rt.CURRENT
        if runtime is not None and not await runtime.until_started():
            self._answer(flow, json_answer(503, {"detail": "chat2api is still starting."}, "start"))
            return
        req = flow.request
        try:
            proto = (req.headers.get("x-forwarded-proto") or "").lower()
            decision = await gateway.handle(
                MirrorRequest(
                    method=req.method,
                    target=req.path,
                    headers=_fields(req.headers),
                    body=req.get_content(strict=False) or b"",
                    host=req.host_header or "",
                    secure=flow.client_conn.tls_established or proto == "https",
                    client=str(flow.client_conn.peername[0]) if flow.client_conn.peername else "",
                )
            )
        except Exception:  # noqa: BLE001 - never leave the flow to go out as it came
            log.exception("mirror failed on %s %s", req.method, req.path.partition("?")[0])
            decision = json_answer(502, {"detail": "Internal error in the mirror."}, "error")
        if isinstance(decision, Answer):
            self._answer(flow, decision)
        else:
            self._forward(flow, decision)

    def _answer(self, flow: http.HTTPFlow, answer: Answer) -> None:
        flow.metadata[TAG] = answer.reason
        flow.response = http.Response.make(answer.status, answer.body, _headers(answer.headers))
        OPS.answered(flow)  # its x-request-id, its access line (addons/ops.py)
        OPS.finished(flow)
        if answer.scrub_query:  # `/?token=…`: keep the secret out of logs and dumps
            flow.request.path = flow.request.path.partition("?")[0]
        # (The access line with the reason is addons/ops.py's; this one is for debugging.)
        log.debug(
            "mirror %s %s -> %d (%s)",
            flow.request.method,
            flow.request.path.partition("?")[0],
            answer.status,
            answer.reason,
        )

    def _forward(self, flow: http.HTTPFlow, fwd: Forward) -> None:
        flow.metadata[TAG] = f"forward:{fwd.upstream}"
        self._forwards[flow] = fwd
        flow.request.headers = _headers(fwd.headers)
        if fwd.body is not None:  # a switch rewrote it (mirror/switches.py)
            flow.request.content = fwd.body
        flow.request.url = (
            fwd.url
        )  # in one go: Host follows (docs/mitmproxy.md#re-targeting-a-request)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        fwd = self._forwards.get(flow)
        if fwd is None or flow.response is None or self.gateway is None:
            return
        response = flow.response
        try:
            response.headers = _headers(
                self.gateway.response_headers(fwd, _fields(response.headers))
            )
            kind = media_type(response.headers)
            if is_event_stream(kind):
                if fwd.record_for is not None:
                    response.stream = recorder(self.gateway.seeds, fwd.record_for)
                else:
                    response.stream = True
            elif not self.gateway.wants_body(fwd, kind):
                response.stream = True
        except Exception:  # noqa: BLE001
            log.exception("mirror could not rewrite the headers of %s", fwd.path)

    def response(self, flow: http.HTTPFlow) -> None:
        try:
            self._response(flow)
        finally:
            OPS.finished(flow)  # a forwarded answer's access line (addons/ops.py)

    def _response(self, flow: http.HTTPFlow) -> None:
        fwd = self._forwards.pop(flow, None)
        response = flow.response
        if fwd is None or response is None or response.stream or self.gateway is None:
            return
        try:
            kind = media_type(response.headers)
            if fwd.window is not None:
                if response.status_code == 200:
                    data = json.loads(response.get_content() or b"null")
                    response.text = json.dumps(self.gateway.filter_list(fwd.window, data))
                return
            if rewritable(kind):
                text = response.get_text(strict=False)
                if text:
                    rewritten = self.gateway.rewrite_text(fwd, kind, text)
                    if rewritten != text:
                        response.text = rewritten
        except Exception:  # noqa: BLE001
            log.exception("mirror could not rewrite the body of %s", fwd.path)
            if fwd.window is not None:  # fail closed: never another seed's list
                answer = json_answer(502, {"detail": "Unreadable conversation list."}, "error")
                flow.response = http.Response.make(
                    answer.status, answer.body, _headers(answer.headers)
                )

    def error(self, flow: http.HTTPFlow) -> None:
        self._forwards.pop(flow, None)
        OPS.finished(flow, flow.error.msg if flow.error else "error")


addons = [Mirror()]
