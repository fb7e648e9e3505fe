"""addons/mirror.py: applying the gateway's decisions to flows."""

from __future__ import annotations

import asyncio
import base64
import json
import types
import warnings
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from mitmproxy import http
    from mitmproxy.proxy.mode_specs import ProxyMode
    from mitmproxy.test import taddons, tflow

from accounts.filestore import FileStore
from accounts.pool import Pool
from accounts.store import seed_key
from addons import mirror as mirror_addon
from mirror.router import ListWindow
from service import runtime as rt
from settings import load_settings

REVERSE = "reverse:http://127.0.0.1:9@5005"
SEED = "seed-0123456789"
CID = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
context: Any = taddons.context


def jwt(tag: str = "a") -> str:
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'RS256'})}.{b64({'exp': 4e9, 'tag': tag})}.sig"


POOL_AT = jwt("pool")


async def _started(timeout: float = 0) -> bool:
    return True


def make_flow(
    path: str,
    mode: str = REVERSE,
    method: str = "GET",
    body: bytes = b"",
    host: str = "127.0.0.1:5005",
    **headers: str,
) -> Any:
    fields = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    request = http.Request.make(method, f"http://127.0.0.1:5005{path}", body, fields)
    request.headers["host"] = host  # what the browser sent (keep_host_header)
    flow = tflow.tflow(req=request)
    flow.client_conn.proxy_mode = ProxyMode.parse(mode)
    flow.client_conn.timestamp_tls_setup = None  # plain http, as the reverse listener
    return flow


@pytest.fixture
def addon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    async def setup() -> Any:
        store = FileStore(tmp_path)
        await store.open()
        await store.add_tokens([POOL_AT])
        settings = load_settings(
            None,
            {
                "ENABLE_GATEWAY": "true",
                "CHATGPT_BASE_URL": "http://127.0.0.1:7000",
                "GATEWAY_HOSTS": "127.0.0.1,gw.example",
            },
        )
        return types.SimpleNamespace(
            settings=settings,
            accounts=types.SimpleNamespace(store=store, pool=Pool(store)),
            until_started=_started,
        )

    monkeypatch.setattr(rt, "CURRENT", asyncio.run(setup()))
    return mirror_addon.Mirror()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_forward_swaps_the_bearer(addon: Any) -> None:
    async def main() -> None:
        with context(addon):
            flow = make_flow(
                "/backend-api/models?x=1", authorization=f"Bearer {SEED}", cookie=f"token={SEED}"
            )
            await addon.request(flow)
            assert flow.response is None and flow.metadata["chat2api.mirror"] == "forward:site"
            assert flow.request.url == "http://127.0.0.1:7000/backend-api/models?x=1"
            assert flow.request.headers["authorization"] == f"Bearer {POOL_AT}"
            assert flow.request.headers["host"] == "127.0.0.1:7000"
            assert "cookie" not in flow.request.headers

    run(main())


def test_guards(addon: Any) -> None:
    async def main() -> None:
        with context(addon):
            answered = make_flow("/backend-api/payments", authorization=f"Bearer {SEED}")
            answered.response = http.Response.make(201)
            await addon.request(answered)
            assert answered.response.status_code == 201
            proxied = make_flow(
                "/backend-api/payments", mode="regular", authorization=f"Bearer {SEED}"
            )
            await addon.request(proxied)
            assert proxied.response is None and proxied.request.host == "127.0.0.1"
            api = make_flow("/v1/models")
            api.metadata["chat2api"] = True
            await addon.request(api)
            assert api.response is None and "chat2api.mirror" not in api.metadata

    run(main())


def test_gateway_off_leaves_flows(
    addon: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(None, {})
    monkeypatch.setattr(rt, "CURRENT", types.SimpleNamespace(settings=settings))

    async def main() -> None:
        with context(addon):
            flow = make_flow("/backend-api/me")
            await addon.request(flow)
            assert flow.response is None and "chat2api.mirror" not in flow.metadata

    run(main())


def test_answers_and_scrubbed_query(addon: Any) -> None:
    async def main() -> None:
        with context(addon):
            blocked = make_flow("/backend-api//PAYMENTS", authorization=f"Bearer {SEED}")
            await addon.request(blocked)
            assert (
                blocked.response.status_code == 403
                and blocked.metadata["chat2api.mirror"] == "blocked"
            )
            login = make_flow(f"/?token={SEED}")
            await addon.request(login)
            assert login.response.status_code == 302 and login.request.path == "/"
            assert "HttpOnly" in login.response.headers["set-cookie"]

    run(main())


def test_an_exception_becomes_a_502(addon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def boom(*args: Any) -> Any:
        raise RuntimeError("boom")

    async def main() -> None:
        with context(addon):
            gateway = addon._active()
            monkeypatch.setattr(gateway, "handle", boom)
            flow = make_flow("/backend-api/me", authorization=f"Bearer {SEED}")
            await addon.request(flow)
            assert flow.response.status_code == 502
            assert flow.request.host == "127.0.0.1" and flow.request.port == 5005  # not forwarded

    run(main())


def test_event_stream_passes_through_and_records(addon: Any) -> None:
    async def main() -> None:
        with context(addon):
            flow = make_flow(
                "/backend-api/conversation",
                method="POST",
                body=b"{}",
                authorization=f"Bearer {SEED}",
            )
            await addon.request(flow)
            assert flow.request.headers["accept-encoding"] == "identity"
            flow.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
            addon.responseheaders(flow)
            stream: Any = flow.response.stream
            assert callable(stream)
            raw = b'data: {"conversation_id": "' + CID.encode() + b'"}\n\ndata: [DONE]\n\n'
            out = [stream(raw[i : i + 7]) for i in range(0, len(raw), 7)] + [stream(b"")]
            assert all(part != [b""] and b"" not in part for part in out)
            assert b"".join(b"".join(part) for part in out) == raw
            assert out[-1] == []
            gateway = addon.gateway
            assert await gateway.seeds.owns(seed_key(SEED), CID)
            await gateway.seeds.drain()
            assert await gateway.seeds.store.conversation_owner(CID) == seed_key(SEED)

    run(main())


def test_text_is_rewritten_binary_is_streamed(addon: Any) -> None:
    async def main() -> None:
        with context(addon):
            page = make_flow("/", cookie=f"token={SEED}", host="gw.example:8443")
            await addon.request(page)
            page.response = http.Response.make(
                200,
                b'<script src="https://cdn.oaistatic.com/assets/a.js"></script>',
                {"content-type": "text/html", "set-cookie": "x=1; Domain=.chatgpt.com; Secure"},
            )
            addon.responseheaders(page)
            assert not page.response.stream and page.response.headers["set-cookie"] == "x=1"
            addon.response(page)
            assert (
                page.response.text == '<script src="http://gw.example:8443/assets/a.js"></script>'
            )
            image = make_flow("/assets/logo.png", cookie=f"token={SEED}")
            await addon.request(image)
            image.response = http.Response.make(200, b"\x89PNG", {"content-type": "image/png"})
            addon.responseheaders(image)
            assert image.response.stream is True

    run(main())


def test_conversation_list_fails_closed(addon: Any) -> None:
    async def main() -> None:
        with context(addon):
            flow = make_flow("/backend-api/conversations", authorization=f"Bearer {SEED}")
            await addon.request(flow)
            fwd = addon._forwards[flow]
            assert fwd.window == ListWindow(owned=frozenset(), offset=0, limit=28)
            flow.response = http.Response.make(
                200, b"{not json", {"content-type": "application/json"}
            )
            addon.responseheaders(flow)
            addon.response(flow)
            assert flow.response.status_code == 502
            assert b"not json" not in (flow.response.content or b"")
            ok = make_flow("/backend-api/conversations", authorization=f"Bearer {SEED}")
            await addon.request(ok)
            listing = {"items": [{"id": CID}], "total": 1}
            ok.response = http.Response.make(
                200, json.dumps(listing).encode(), {"content-type": "application/json"}
            )
            addon.responseheaders(ok)
            addon.response(ok)
            assert json.loads(ok.response.content or b"")["items"] == []

    run(main())


def test_a_request_during_start_up_waits_then_gets_an_honest_503(
    addon: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mitmproxy listens before the addons' ``running`` hooks are done."""
    waited: list[bool] = []

    async def not_yet(timeout: float = 0) -> bool:
        waited.append(True)
        return False

    monkeypatch.setattr(rt.CURRENT, "until_started", not_yet)
    flow = make_flow("/backend-api/me")

    async def main() -> None:
        with context(addon):
            await addon.request(flow)

    asyncio.run(main())
    assert waited
    assert flow.response is not None and flow.response.status_code == 503
    assert b"starting" in flow.response.content
