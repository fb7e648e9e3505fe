"""accounts.tokens: classification by structure, parsing, masking."""

from __future__ import annotations

import base64
import json

import pytest

from accounts.tokens import (
    InvalidToken,
    TokenKind,
    account_id_from_jwt,
    classify,
    jwt_exp,
    mask,
    normalise_line,
    parse_line,
    token_id,
)


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def make_jwt(exp: object = 2_000_000_000, **claims: object) -> str:
    payload = dict(claims)
    if exp is not None:
        payload["exp"] = exp
    return f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(payload)}.c2lnbmF0dXJl"


AT = make_jwt(**{"https://api.openai.com/auth": {"chatgpt_account_id": "acc-123"}})
RT45 = "Hz4-iJ0pE6rOmpLzBiMNSdbSZrzpT6kS3Q2jEqbUJ1GJC"
RT_NEW = "rt_" + "Ab1_-" * 20 + ".xyz"


@pytest.mark.parametrize(
    ("token", "kind"),
    [
        (AT, TokenKind.ACCESS),
        (make_jwt(exp=1.5), TokenKind.ACCESS),
        ("fk-anything-for-a-gateway", TokenKind.ACCESS),
        (RT45, TokenKind.REFRESH),
        (RT_NEW, TokenKind.REFRESH),
        ("x" * 44, TokenKind.REFRESH),  # not told apart by length: 44 works too
        ("v1." + "A" * 300, TokenKind.REFRESH),
    ],
)
def test_classify_accepts(token: str, kind: TokenKind) -> None:
    assert classify(token) is kind


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "empty"),
        ("short", "too short"),
        ("sk-proj-abcdefghijklmnopqrstuvwxyz", "OpenAI API key"),
        (make_jwt(exp=None, sub="x"), "without an exp"),
        ("eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.sig", "malformed JWT"),
        ("abc def ghijklmnopqrstuvwxyz", "whitespace"),
        ("abcdefghijklmnopqrstuvwxyz<>", "unexpected characters"),
        (make_jwt(exp="tomorrow"), "without an exp"),
        (make_jwt(exp=True), "without an exp"),
    ],
)
def test_classify_rejects(token: str, reason: str) -> None:
    with pytest.raises(InvalidToken, match=reason):
        classify(token)


def test_parse_line_with_account_suffix() -> None:
    entry = parse_line(f"  {RT45} , team-42 ")
    assert (entry.token, entry.account_id, entry.kind) == (RT45, "team-42", TokenKind.REFRESH)
    assert entry.line == f"{RT45},team-42"
    assert entry.id == token_id(entry.line)
    assert normalise_line(f" {RT45} , team-42") == entry.line
    with pytest.raises(InvalidToken, match="account id"):
        parse_line(f"{RT45},bad id!")
    with pytest.raises(InvalidToken, match="account id"):
        parse_line(f"{RT45},")


def test_jwt_claims() -> None:
    assert jwt_exp(AT) == 2_000_000_000.0
    assert jwt_exp(RT45) is None
    assert account_id_from_jwt(AT) == "acc-123"
    assert account_id_from_jwt(make_jwt()) is None
    assert parse_line(AT).exp == 2_000_000_000.0


def test_mask_never_shows_the_whole_token() -> None:
    assert mask(RT45) == "Hz4-iJ…1GJC"
    assert mask("abcdefghij") == "…ij"
    assert mask("abc") == "…"
    for token in (AT, RT45, RT_NEW, "fk-anything-for-a-gateway"):
        assert token not in mask(token)
    assert len(token_id(RT45)) == 12 and token_id(RT45) == token_id(RT45)
