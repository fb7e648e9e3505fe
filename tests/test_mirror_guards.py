"""The mirror's guards in isolation: body reading, per-address limits, host names,
origins, backend prefixes and the seed allow-list (tests/security/test_mirror.py
runs the same attacks end to end)."""

from __future__ import annotations

import gzip
import json

import pytest

from mirror import default_hosts
from mirror.bodies import Unreadable, conversation_ids
from mirror.limits import PerAddress, address_key
from mirror.paths import allowed, as_backend_api, canonical, is_backend, names_conversations
from mirror.router import MirrorRequest, cross_site, same_origin
from settings import SettingsError, load_settings
from settings.allow_list import parse_allow_rules
from settings.host_names import split_host
from settings.schema import DEFAULT_GATEWAY_ALLOWED_PATHS

CID = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
TEXT = json.dumps({"action": "next", "conversation_id": CID})


@pytest.mark.parametrize(
    "body",
    [
        TEXT.encode(),
        b"\xef\xbb\xbf" + TEXT.encode(),
        TEXT.encode("utf-16"),
        TEXT.encode("utf-16-le"),
        TEXT.encode("utf-16-be"),
        TEXT.encode("utf-32"),
        TEXT.encode("utf-32-be"),
        f'{{"conversation_id": "{CID}", "conversation_id": null}}'.encode(),
        TEXT.replace("_", "\\u005f").encode(),
        json.dumps([{"conversation_id": CID}]).encode(),
    ],
)
def test_bodies_are_read_as_a_backend_reads_them(body: bytes) -> None:
    assert conversation_ids(body) == [CID]


@pytest.mark.parametrize(
    "body",
    # mtime=0: gzip output (and so the test id) must not depend on the clock
    [b"\xff\xfe\x00{", gzip.compress(TEXT.encode(), mtime=0), b"conversation_id=x", b"{", b"[1,"],
)
def test_unreadable_bodies(body: bytes) -> None:
    with pytest.raises(Unreadable):
        conversation_ids(body)


def test_bodies_without_a_conversation() -> None:
    assert conversation_ids(b"") == [] and conversation_ids(b" \n") == []
    assert conversation_ids(b'{"conversation_id": null, "x": {"conversation_id": "n"}}') == []
    assert conversation_ids(b"[1, 2]") == [] and conversation_ids(b'"text"') == []
    with pytest.raises(Unreadable):
        conversation_ids(b'{"conversation_id": 7}')
    with pytest.raises(Unreadable):
        conversation_ids(b"[" * 100_000)


def test_per_address_limit() -> None:
    now = [1000.0]
    limit = PerAddress(2, clock=lambda: now[0], max_addresses=3)
    assert limit.take("1.2.3.4") is None and limit.take("1.2.3.4") is None
    wait = limit.take("1.2.3.4")
    assert wait is not None and 3599 <= wait <= 3600
    assert limit.take("5.6.7.8") is None  # another address has its own budget
    now[0] += 3600
    assert limit.take("1.2.3.4") is None  # an hour later
    assert PerAddress(0).take("x") is None  # 0: no limit
    for i in range(10):  # bounded memory
        limit.take(f"10.0.0.{i}")
    assert len(limit._seen) == 3


def test_address_keys() -> None:
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff") == "2001:db8::/64"
    assert address_key("::ffff:10.1.2.3") == "10.1.2.3"
    assert address_key("fe80::1%eth0") == "fe80::/64"


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        ("127.0.0.1:5005", ("127.0.0.1", 5005)),
        ("LocalHost.", ("localhost", None)),
        ("[::1]:80", ("::1", 80)),
        ("::1", ("::1", None)),
        ("chat.example.com", ("chat.example.com", None)),
        ("", None),
        ("a@b", None),
        ("evil.example:99999", None),
        ("x y", None),
    ],
)
def test_split_host(value: str, parts: tuple[str, int | None] | None) -> None:
    assert split_host(value) == parts


def test_origins() -> None:
    assert same_origin("http://127.0.0.1:5005", "127.0.0.1:5005")
    assert same_origin("https://chat.example.com", "chat.example.com")
    assert not same_origin("http://localhost:5005", "127.0.0.1:5005")
    assert not same_origin("http://127.0.0.1:5006", "127.0.0.1:5005")
    assert not same_origin("null", "127.0.0.1:5005")
    assert not same_origin("http://127.0.0.1:bad", "127.0.0.1:5005")

    def req(**headers: str) -> MirrorRequest:
        fields = [(k.replace("_", "-"), v) for k, v in headers.items()]
        return MirrorRequest(method="POST", target="/login", headers=fields, host="gw:80")

    assert not cross_site(req())
    assert not cross_site(req(sec_fetch_site="same-origin", origin="null"))
    assert cross_site(req(sec_fetch_site="same-site"))
    assert cross_site(req(origin="http://evil"))
    assert not cross_site(req(origin="http://gw"))
    assert not cross_site(req(referer="http://evil/x"))
    assert cross_site(req(referer="http://evil/x"), referer=True)
    assert not cross_site(req(referer="http://evil/x", sec_fetch_site="none"), referer=True)


def test_default_hosts_and_the_setting() -> None:
    assert default_hosts("0.0.0.0") == ("localhost", "127.0.0.1", "::1")
    assert default_hosts("10.0.0.5")[0] == "10.0.0.5"
    s = load_settings(None, {"GATEWAY_HOSTS": "Chat.Example.com, [::1]:5005,10.0.0.5"})
    assert s.gateway_hosts == ("chat.example.com", "[::1]:5005", "10.0.0.5")
    with pytest.raises(SettingsError, match="gateway_hosts"):
        load_settings(None, {"GATEWAY_HOSTS": "evil/x"})
    with pytest.raises(SettingsError, match="gateway_allowed_paths"):
        load_settings(None, {"GATEWAY_ALLOWED_PATHS": "backend-api/("})


def test_backend_prefixes() -> None:
    for prefix in ("backend-api", "backend-alt", "BACKEND-ANON", "backend-x"):
        path = canonical(f"/{prefix}/me?x=1")
        assert as_backend_api(path).match == "/backend-api/me"
        assert as_backend_api(path).forward == path.forward and is_backend(path)
    assert as_backend_api(canonical("/backendapi/me")).match == "/backendapi/me"
    assert is_backend(canonical("/public-api/gizmos")) and not is_backend(canonical("/c/x"))
    assert names_conversations(canonical("/backend-api/f/conversation/prepare"))
    assert names_conversations(canonical("/backend-api/share/create"))
    assert not names_conversations(canonical("/backend-api/files"))


RULES = parse_allow_rules(DEFAULT_GATEWAY_ALLOWED_PATHS)


@pytest.mark.parametrize(
    ("method", "target", "ok"),
    [
        ("POST", "/backend-api/sentinel/chat-requirements", True),
        ("POST", "/backend-api/sentinel/chat-requirements/prepare", True),
        ("POST", "/backend-api/f/conversation", True),
        ("POST", "/backend-api/f/conversation/prepare", True),
        ("POST", "/backend-api/conversation/init", True),
        ("GET", f"/backend-api/conversation/{CID}", True),
        ("GET", f"/backend-api/conversation/{CID}/stream_status", True),
        ("PATCH", f"/backend-api/conversation/{CID}", True),
        ("GET", "/backend-api/conversations", True),
        ("PATCH", "/backend-api/conversations", False),
        ("GET", "/backend-api/models", True),
        ("POST", "/backend-api/files", True),
        ("GET", "/backend-api/gizmos/g-abc123", True),
        ("GET", "/backend-api/gizmos/g-p-abc123", False),
        ("GET", "/backend-api/gizmos/g-P-abc123/conversations", False),
        ("GET", "/backend-api/celsius/ws/user", False),
        ("POST", "/backend-api/register-websocket", False),
        ("GET", "/backend-api/conversation/not-a-uuid", False),
        ("GET", "/backend-api/conversations/search", False),
    ],
)
def test_default_allow_list(method: str, target: str, ok: bool) -> None:
    assert allowed(RULES, method, as_backend_api(canonical(target))) is ok
