"""addons/admin.py: admin routes on the reverse listener only."""

from __future__ import annotations

import asyncio
import base64
import json
import warnings
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    # mitmproxy → ldap3 → pyasn1 warns on import (tagMap/typeMap); not ours to fix.
    warnings.simplefilter("ignore", DeprecationWarning)
    from mitmproxy import http
    from mitmproxy.proxy.mode_specs import ProxyMode
    from mitmproxy.test import taddons, tflow

from accounts.filestore import FileStore
from accounts.pool import Pool
from addons import admin as admin_addon


def make_jwt(exp: float = 2e9) -> str:
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'RS256'})}.{b64({'exp': exp})}.sig"


def make_flow(path: str, mode: str, method: str = "GET", body: bytes = b"", **headers: str) -> Any:
    fields = [(k.encode(), v.encode()) for k, v in headers.items()]
    request = http.Request.make(method, f"http://127.0.0.1:5005{path}", body, fields)
    flow = tflow.tflow(req=request)
    flow.client_conn.proxy_mode = ProxyMode.parse(mode)
    return flow


REVERSE = "reverse:http://127.0.0.1:9@5005"
context: Any = taddons.context  # untyped in mitmproxy


async def make_pool(tmp_path: Path) -> Pool:
    store = FileStore(tmp_path)
    await store.open()
    return Pool(store, codes=["code-1"])


def test_reverse_flows_are_answered(tmp_path: Path) -> None:
    async def main() -> None:
        addon = admin_addon.TokenAdmin()
        addon.set_pool(await make_pool(tmp_path), admin_key="k", prefix="pre")
        with context(addon):
            page = make_flow("/pre/tokens", REVERSE)
            await addon.request(page)
            assert page.response.status_code == 200 and b"sessionStorage" in page.response.content
            assert page.metadata["chat2api.admin"] == "/tokens"

            up = make_flow(
                "/tokens/api/tokens", REVERSE, "POST", make_jwt().encode(), Authorization="Bearer k"
            )
            await addon.request(up)
            assert json.loads(up.response.content)["added"] == 1

            listing = make_flow("/pre/tokens/api/tokens", REVERSE, Authorization="Bearer code-1")
            await addon.request(listing)
            assert json.loads(listing.response.content)["count"] == 1

            denied = make_flow("/tokens/api/tokens", REVERSE, Authorization="Bearer nope")
            await addon.request(denied)
            assert denied.response.status_code == 401

            other = make_flow("/v1/chat/completions", REVERSE, "POST")
            await addon.request(other)
            assert other.response is None

    asyncio.run(main())


@pytest.mark.parametrize("mode", ["regular", "upstream:http://127.0.0.1:9", "socks5"])
def test_proxy_listener_flows_are_untouched(tmp_path: Path, mode: str) -> None:
    async def main() -> None:
        addon = admin_addon.TokenAdmin()
        addon.set_pool(await make_pool(tmp_path), admin_key="k")
        with context(addon):
            flow = make_flow("/tokens/api/tokens", mode, Authorization="Bearer k")
            await addon.request(flow)
            assert flow.response is None and "chat2api.admin" not in flow.metadata

    asyncio.run(main())


def test_answered_or_dead_flows_are_left_alone(tmp_path: Path) -> None:
    async def main() -> None:
        addon = admin_addon.TokenAdmin(await make_pool(tmp_path))
        with context(addon):
            answered = make_flow("/tokens", REVERSE)
            answered.response = http.Response.make(204)
            await addon.request(answered)
            assert answered.response.status_code == 204
            dead = make_flow("/tokens", REVERSE)
            dead.live = False
            await addon.request(dead)
            assert dead.response is None

    asyncio.run(main())


def test_exceptions_become_json_500(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        pool = await make_pool(tmp_path)
        addon = admin_addon.TokenAdmin()
        addon.set_pool(pool, admin_key="k")

        async def broken() -> list[str]:
            raise OSError("disk on fire")

        monkeypatch.setattr(pool.store, "tokens", broken)
        with context(addon):
            flow = make_flow("/tokens/api/tokens", REVERSE, Authorization="Bearer k")
            await addon.request(flow)
            assert flow.response.status_code == 500
            assert json.loads(flow.response.content)["error"]["type"] == "server_error"
            assert b"disk on fire" not in flow.response.content

    asyncio.run(main())


def test_unwired_addon_answers_503_then_set_pool_wires_it(tmp_path: Path) -> None:
    async def main() -> None:
        addon = admin_addon.TokenAdmin()
        with context(addon):
            flow = make_flow("/tokens/api/tokens", REVERSE, Authorization="Bearer k")
            await addon.request(flow)
            assert flow.response.status_code == 503
            addon.set_pool(await make_pool(tmp_path), admin_key="k")
            flow = make_flow("/tokens/api/tokens", REVERSE, Authorization="Bearer k")
            await addon.request(flow)
            assert flow.response.status_code == 200

    asyncio.run(main())


def test_loading_admin_py_as_a_script_adds_nothing() -> None:
    """chat2api.py owns the one TokenAdmin (ahead of itself); ``-s addons/admin.py``
    next to it must not register a second one: mitmproxy refuses two addons of
    the same name and stops at start-up."""
    from addons import chat2api

    assert admin_addon.addons == []
    kinds = [type(a).__name__ for a in chat2api.addons]
    assert kinds == ["Shield", "Ops", "TokenAdmin", "Chat2Api", "OpsTail"]
