"""gateway/router.py with gateway/seeds.py, gateway/seedapi.py and the store's seeds."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from accounts.filestore import FileStore
from accounts.pool import Pool
from accounts.store import Health, SeedRecord, State, seed_key
from accounts.tokens import token_id
from mirror import build_gateway
from mirror.router import SESSION_BEARER, Answer, Forward, Gateway, ListWindow, MirrorRequest
from settings import load_settings

SEED = "seed-0123456789"
OTHER = "seed-abcdefghij"
CID = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"


def jwt(exp: float = 4e9, tag: str = "a") -> str:
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'RS256'})}.{b64({'exp': exp, 'tag': tag})}.sig"


POOL = [jwt(tag="one"), jwt(tag="two")]


def run(body: Callable[[Gateway, FileStore], Awaitable[None]], tmp: Path, **env: str) -> None:
    async def main() -> None:
        store = FileStore(tmp)
        await store.open()
        await store.add_tokens(POOL)
        settings = load_settings(
            None,
            {"ENABLE_GATEWAY": "true", "ADMIN_KEY": "adm1n-key", "GATEWAY_HOSTS": "gw.test", **env},
        )
        pool = Pool(store, codes=settings.authorization)
        gateway = build_gateway(settings, store, pool)
        await body(gateway, store)
        await gateway.seeds.drain()

    asyncio.run(main())


def req(
    method: str, target: str, *headers: tuple[str, str], body: bytes = b"", **kw: Any
) -> MirrorRequest:
    return MirrorRequest(
        method=method, target=target, headers=list(headers), body=body, host="gw.test:5005", **kw
    )


def auth(value: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {value}")


def answer(result: Answer | Forward) -> Answer:
    assert isinstance(result, Answer), result
    return result


def forward(result: Answer | Forward) -> Forward:
    assert isinstance(result, Forward), result
    return result


def test_login_page_and_form(tmp_path: Path) -> None:
    async def body(gw: Gateway, store: FileStore) -> None:
        page = answer(await gw.handle(req("GET", "/login")))
        assert (
            page.status == 200
            and b"<textarea" in page.body
            and b"http" not in page.body.split(b"<body>")[1]
        )
        csp = dict(page.headers)["content-security-policy"]
        assert "default-src 'none'" in csp
        ok = answer(
            await gw.handle(
                req(
                    "POST",
                    "/login",
                    ("content-type", "application/x-www-form-urlencoded"),
                    body=f"token={SEED}".encode(),
                    secure=True,
                )
            )
        )
        assert ok.status == 303 and dict(ok.headers)["location"] == "/"
        cookie = dict(ok.headers)["set-cookie"]
        assert cookie.startswith(f"token={SEED};") and cookie.endswith(
            "HttpOnly; SameSite=Lax; Secure"
        )
        bad = answer(await gw.handle(req("POST", "/login", body=b"token=short")))
        assert bad.status == 401 and b"8 to 512" in bad.body
        out = answer(await gw.handle(req("GET", "/logout")))
        assert (
            dict(out.headers)["location"] == "/login"
            and "Max-Age=0" in dict(out.headers)["set-cookie"]
        )

    run(body, tmp_path)


def test_token_in_url(tmp_path: Path) -> None:
    async def body(gw: Gateway, store: FileStore) -> None:
        ok = answer(await gw.handle(req("GET", f"/?token={SEED}")))
        assert ok.status == 302 and ok.scrub_query and dict(ok.headers)["location"] == "/"
        assert dict(ok.headers)["referrer-policy"] == "no-referrer"
        bad = answer(await gw.handle(req("GET", "/?token=x")))
        assert bad.scrub_query and dict(bad.headers)["location"] == "/login?error=invalid"

    run(body, tmp_path)


def test_no_credential(tmp_path: Path) -> None:
    async def body(gw: Gateway, store: FileStore) -> None:
        nav = answer(await gw.handle(req("GET", "/", ("accept", "text/html"))))
        assert nav.status == 302 and dict(nav.headers)["location"] == "/login"
        api = answer(await gw.handle(req("GET", "/backend-api/models")))
        assert api.status == 401
        marker = answer(await gw.handle(req("GET", "/backend-api/models", auth(SESSION_BEARER))))
        assert marker.status == 401
        session = answer(await gw.handle(req("GET", "/api/auth/session")))
        assert json.loads(session.body) == {}

    run(body, tmp_path)


def test_seed_gets_an_account_on_its_first_request(tmp_path: Path) -> None:
    async def body(gw: Gateway, store: FileStore) -> None:
        fwd = forward(await gw.handle(req("GET", "/backend-api/models", auth(SEED))))
        token = dict(fwd.headers)["authorization"].removeprefix("Bearer ")
        assert token in POOL and fwd.url == "https://chatgpt.com/backend-api/models"
        record = await store.seed(seed_key(SEED))
        assert record is not None and record.entry_id == token_id(token)
        for _ in range(5):  # and keeps it
            again = forward(await gw.handle(req("GET", "/backend-api/models", auth(SEED))))
            assert dict(again.headers)["authorization"] == f"Bearer {token}"
        # The cookie, with the session marker as bearer, is the same user.
        cookie = forward(
            await gw.handle(
                req(
                    "GET",
                    "/backend-api/models",
                    auth(SESSION_BEARER),
                    ("cookie", f"a=1; token={SEED}"),
                )
            )
        )
        assert dict(cookie.headers)["authorization"] == f"Bearer {token}"
        assert dict(cookie.headers)["cookie"] == "a=1"
        # A page load gets no Authorization at all.
        page = forward(await gw.handle(req("GET", "/", ("cookie", f"token={SEED}"))))
        assert "authorization" not in dict(page.headers)
        # Its account turns bad: the seed moves to the other one.
        await store.set_health(token_id(token), Health(state=State.BAD))
        moved = forward(await gw.handle(req("GET", "/backend-api/models", auth(SEED))))
        assert dict(moved.headers)["authorization"] != f"Bearer {token}"

    run(body, tmp_path)


def test_without_auto_seed_only_admin_seeds(tmp_path: Path) -> None:
    async def body(gw: Gateway, store: FileStore) -> None:
        refused = answer(await gw.handle(req("GET", "/backend-api/models", auth(SEED))))
        assert refused.status == 401
        made = answer(
            await gw.handle(
                req(
                    "POST",
                    "/seedtoken",
                    auth("adm1n-key"),
                    ("content-type", "application/json"),
                    body=json.dumps({"seed": SEED, "token": token_id(POOL[1])}).encode(),
                )
            )
        )
        assert made.status == 200 and json.loads(made.body)["entry_id"] == token_id(POOL[1])
        fwd = forward(await gw.handle(req("GET", "/backend-api/models", auth(SEED))))
        assert dict(fwd.headers)["authorization"] == f"Bearer {POOL[1]}"

    run(body, tmp_path, AUTO_SEED="false")


def test_seed_api(tmp_path: Path) -> None:
    async def body(gw: Gateway, store: FileStore) -> None:
        assert answer(await gw.handle(req("GET", "/seedtoken"))).status == 401
        assert answer(await gw.handle(req("GET", "/seedtoken", auth("nope")))).status == 401
        key = auth("adm1n-key")
        direct = jwt(tag="direct")
        made = answer(
            await gw.handle(
                req(
                    "POST",
                    "/seedtoken",
                    key,
                    ("content-type", "application/x-www-form-urlencoded"),
                    body=f"seed={OTHER}&token={direct}".encode(),
                )
            )
        )
        view = json.loads(made.body)
        assert (
            view["seed"] == OTHER and view["token"] != direct and view["id"] == seed_key(OTHER)[:12]
        )
        listing = json.loads(answer(await gw.handle(req("GET", "/seedtoken", key))).body)
        assert listing["count"] == 1 and direct not in json.dumps(listing)
        fwd = forward(await gw.handle(req("GET", "/backend-api/models", auth(OTHER))))
        assert dict(fwd.headers)["authorization"] == f"Bearer {direct}"
        bad = answer(await gw.handle(req("POST", "/seedtoken", key, body=b'{"seed": "x"}')))
        assert bad.status == 400
        gone = answer(
            await gw.handle(
                req("DELETE", "/seedtoken", key, body=json.dumps({"seed": OTHER}).encode())
            )
        )
        assert gone.status == 200 and await store.seed(seed_key(OTHER)) is None
        assert answer(await gw.handle(req("DELETE", "/seedtoken/abcdefabcdef", key))).status == 404

    run(body, tmp_path)


def test_direct_tokens_are_not_restricted(tmp_path: Path) -> None:
    async def body(gw: Gateway, store: FileStore) -> None:
        own = jwt(tag="own")
        fwd = forward(
            await gw.handle(req("GET", "/backend-api/me", auth(own), ("chatgpt-account-id", "acc")))
        )
        assert dict(fwd.headers)["authorization"] == f"Bearer {own}"
        assert dict(fwd.headers)["chatgpt-account-id"] == "acc"
        forward(await gw.handle(req("GET", "/backend-api/payments", auth(own))))
        forward(await gw.handle(req("GET", f"/backend-api/conversation/{CID}", auth(own))))
        expired = answer(await gw.handle(req("GET", "/backend-api/me", auth(jwt(exp=1)))))
        assert expired.status == 401

    run(body, tmp_path)


def test_seed_stubs_bans_and_ownership(tmp_path: Path) -> None:
    async def body(gw: Gateway, store: FileStore) -> None:
        me = answer(await gw.handle(req("GET", "/Backend-API/me/", auth(SEED))))
        assert me.reason == "stub" and json.loads(me.body)["email"] == "chatgpt@openai.com"
        session = answer(
            await gw.handle(req("GET", "/api/auth/session", ("cookie", f"token={SEED}")))
        )
        assert json.loads(session.body)["accessToken"] == SESSION_BEARER
        blocked = answer(await gw.handle(req("POST", "/backend-api/%6demories", auth(SEED))))
        assert blocked.status == 403
        not_mine = answer(
            await gw.handle(req("GET", f"/backend-api/conversation/{CID}", auth(SEED)))
        )
        assert not_mine.status == 404
        cont = answer(
            await gw.handle(
                req(
                    "POST",
                    "/backend-api/conversation",
                    auth(SEED),
                    body=json.dumps({"conversation_id": CID}).encode(),
                )
            )
        )
        assert cont.status == 404
        gw.seeds.note(seed_key(OTHER), CID)
        assert (
            answer(
                await gw.handle(req("GET", f"/backend-api/conversation/{CID}", auth(SEED)))
            ).status
            == 404
        )
        await gw.seeds.drain()
        assert await store.conversation_owner(CID) == seed_key(OTHER)
        mine = forward(
            await gw.handle(req("PATCH", f"/backend-api/conversation/{CID.upper()}", auth(OTHER)))
        )
        assert mine.url.endswith(f"/backend-api/conversation/{CID.upper()}")
        new = forward(
            await gw.handle(req("POST", "/backend-api/conversation", auth(SEED), body=b"{}"))
        )
        assert new.record_for == seed_key(SEED) and ("accept-encoding", "identity") in new.headers
        listing = forward(
            await gw.handle(
                req(
                    "GET",
                    "/backend-api/conversations?offset=1&limit=2&is_archived=false",
                    auth(OTHER),
                )
            )
        )
        assert listing.window == ListWindow(owned=frozenset({CID}), offset=1, limit=2)
        assert listing.url.endswith(
            "/backend-api/conversations?is_archived=false&offset=0&limit=100"
        )

    run(body, tmp_path)


def test_filter_list() -> None:
    window = ListWindow(owned=frozenset({"a", "c", "d"}), offset=1, limit=1)
    data = {"items": [{"id": x} for x in "abcd"], "total": 4, "limit": 100, "offset": 0}
    assert Gateway.filter_list(window, data) == {
        "items": [{"id": "c"}],
        "total": 3,
        "limit": 1,
        "offset": 1,
        "has_missing_conversations": False,
    }
    assert Gateway.filter_list(window, "junk")["items"] == []


def test_seeds_and_owners_survive_a_restart(tmp_path: Path) -> None:
    async def main() -> None:
        store = FileStore(tmp_path)
        await store.open()
        await store.put_seed("k1", SeedRecord(entry_id="e1", created=1.0))
        assert await store.own_conversation("c1", "k1")
        assert await store.own_conversation("c2", "k1")
        assert not await store.own_conversation("c1", "k2")  # first owner wins
        again = FileStore(tmp_path)
        await again.open()
        assert await again.seed("k1") == SeedRecord(entry_id="e1", created=1.0)
        assert await again.owned_conversations("k1") == ["c2", "c1"]
        assert await again.conversation_owner("c1") == "k1"
        assert await again.remove_seed("k1") and not await again.remove_seed("k1")
        assert SEED not in (tmp_path / "seeds.json").read_text()

    asyncio.run(main())


@pytest.mark.parametrize("target", ["/a%00", "/%ff"])
def test_bad_path_is_400(tmp_path: Path, target: str) -> None:
    async def body(gw: Gateway, store: FileStore) -> None:
        assert answer(await gw.handle(req("GET", target, auth(SEED)))).status == 400

    run(body, tmp_path)


def test_force_no_history_and_x_sign(tmp_path: Path) -> None:
    turn = json.dumps(
        {"action": "next", "model": "auto", "history_and_training_disabled": False}
    ).encode()

    async def body(gw: Gateway, store: FileStore) -> None:
        for path in ("/backend-api/conversation", "/backend-alt/f/conversation"):
            fwd = forward(await gw.handle(req("POST", path, auth(SEED), body=turn)))
            assert fwd.conversation and fwd.body is not None
            assert json.loads(fwd.body)["history_and_training_disabled"] is True
            assert ("x-sign", "s1gn") in gw.response_headers(fwd, [])
        own = forward(
            await gw.handle(req("POST", "/backend-api/conversation", auth(POOL[0]), body=turn))
        )
        assert own.conversation and own.body is None  # their account, their choice
        other = forward(await gw.handle(req("GET", "/backend-api/models", auth(SEED))))
        assert not other.conversation and gw.response_headers(other, []) == []

    run(body, tmp_path, FORCE_NO_HISTORY="true", X_SIGN="s1gn")
