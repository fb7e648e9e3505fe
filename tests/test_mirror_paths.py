"""gateway/paths.py: canonical paths and the ban list."""

from __future__ import annotations

import pytest

from mirror.paths import BadPath, banned, canonical, conversation_in_path
from settings.ban_list import parse_ban_rules
from settings.schema import DEFAULT_GATEWAY_BLOCKED_PATHS

RULES = parse_ban_rules(DEFAULT_GATEWAY_BLOCKED_PATHS)
UUID = "0f3a6b2c-1d4e-4f5a-8b6c-7d8e9f0a1b2c"


@pytest.mark.parametrize(
    ("target", "match", "forward", "query"),
    [
        ("/backend-api/payments", "/backend-api/payments", "/backend-api/payments", ""),
        ("/backend-api/payments/", "/backend-api/payments", "/backend-api/payments/", ""),
        ("/Backend-API/PAYMENTS", "/backend-api/payments", "/Backend-API/PAYMENTS", ""),
        ("/backend-api/%70ayments", "/backend-api/payments", "/backend-api/payments", ""),
        ("/backend-api%2Fpayments", "/backend-api/payments", "/backend-api/payments", ""),
        ("/backend-api%252Fpayments", "/backend-api/payments", "/backend-api/payments", ""),
        ("//backend-api//payments", "/backend-api/payments", "/backend-api/payments", ""),
        ("/backend-api/x/../payments", "/backend-api/payments", "/backend-api/payments", ""),
        ("/../../backend-api/./payments", "/backend-api/payments", "/backend-api/payments", ""),
        ("/backend-api\\payments", "/backend-api/payments", "/backend-api/payments", ""),
        ("/backend-api/payments?a=1&b", "/backend-api/payments", "/backend-api/payments", "a=1&b"),
        ("/backend-api/payments#frag", "/backend-api/payments", "/backend-api/payments", ""),
        ("/", "/", "/", ""),
        ("/a%20b", "/a b", "/a%20b", ""),
    ],
)
def test_canonical(target: str, match: str, forward: str, query: str) -> None:
    path = canonical(target)
    assert (path.match, path.forward, path.query) == (match, forward, query)


@pytest.mark.parametrize("target", ["/a%00b", "/a\nb", "/%ff", "/%25252525252F"])
def test_bad_paths(target: str) -> None:
    with pytest.raises(BadPath):
        canonical(target)


@pytest.mark.parametrize(
    ("method", "target", "blocked"),
    [
        ("GET", "/backend-api/payments", True),
        ("DELETE", "/BACKEND-API//Payments/", True),
        ("GET", f"/backend-api/conversations/{UUID.upper()}", True),
        ("GET", "/backend-api/conversations", False),
        ("PATCH", "/backend-api/conversations", True),
        ("GET", "/backend-api/settings/user", False),
        ("PATCH", "/backend-api/settings/account_user_setting", True),
        ("OPTIONS", "/backend-api/settings/user", False),
        ("POST", "/admin", True),
        ("GET", "/backend-api/models", False),
        ("POST", "/backend-api/conversation", False),
        ("GET", "/x/../backend-api/memories", True),
    ],
)
def test_ban_list(method: str, target: str, blocked: bool) -> None:
    assert (banned(RULES, method, canonical(target)) is not None) is blocked


def test_ban_rule_syntax() -> None:
    (rule,) = parse_ban_rules(["write: /backend-api/x"])
    assert rule.writes_only and rule.matches("POST", "/backend-api/x/y")
    assert not rule.matches("GET", "/backend-api/x")
    with pytest.raises(ValueError, match="not a valid regex"):
        parse_ban_rules(["backend-api/("])
    with pytest.raises(ValueError, match="empty"):
        parse_ban_rules(["write:"])


@pytest.mark.parametrize(
    ("target", "cid"),
    [
        (f"/backend-api/conversation/{UUID}", UUID),
        (f"/backend-api/conversation/{UUID.upper()}/textdocs", UUID),
        (f"/backend-api/conversation/gen_title/{UUID}", UUID),
        (f"/backend-api//f/conversation/{UUID}/", UUID),
        ("/backend-api/conversation/init", None),
        ("/backend-api/conversation", None),
        (f"/backend-api/conversations/{UUID}", None),
    ],
)
def test_conversation_in_path(target: str, cid: str | None) -> None:
    assert conversation_in_path(canonical(target)) == cid
