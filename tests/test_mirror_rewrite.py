"""gateway/rewrite.py: upstream choice, header, cookie and body rewriting."""

from __future__ import annotations

import pytest

from mirror.paths import canonical
from mirror.rewrite import (
    HostRewriter,
    Upstreams,
    request_headers,
    response_headers,
    rewrite_set_cookie,
    strip_token_cookie,
)

UP = Upstreams(site=["https://chatgpt.com"])
GW = "http://127.0.0.1:5005"


@pytest.mark.parametrize(
    ("target", "name", "url"),
    [
        ("/assets/app.js", "assets", "https://cdn.oaistatic.com/assets/app.js"),
        ("/file-abc?se=1&sig=x", "files", "https://files.oaiusercontent.com/file-abc?se=1&sig=x"),
        ("/sandbox/assets/x.js", "sandbox", "https://web-sandbox.oaiusercontent.com/assets/x.js"),
        ("/ab/v1/initialize", "statsig", "https://ab.chatgpt.com/v1/initialize"),
        ("/backend-api/me", "site", "https://chatgpt.com/backend-api/me"),
        # Prefixes, never substrings (docs/mirror.md#upstreams):
        ("/backend-api/assets/x", "site", "https://chatgpt.com/backend-api/assets/x"),
        ("/backend-api/files/file-abc", "site", "https://chatgpt.com/backend-api/files/file-abc"),
        ("/c/sandbox", "site", "https://chatgpt.com/c/sandbox"),
        ("/x/v1/rgstr", "site", "https://chatgpt.com/x/v1/rgstr"),
        ("/assets/../backend-api/me", "site", "https://chatgpt.com/backend-api/me"),
    ],
)
def test_pick(target: str, name: str, url: str) -> None:
    upstream, got = UP.pick(canonical(target))
    assert (upstream.name, got) == (name, url)


def test_host_rewriter() -> None:
    rw = HostRewriter(UP.host_map())
    text = (
        'src="https://cdn.oaistatic.com/assets/a.js" href="https://chatgpt.com/c/1" '
        '"https:\\/\\/chatgpt.com\\/x" https://ab.chatgpt.com/v1 '
        "https://WEB-SANDBOX.oaiusercontent.com/y "
        "https://chatgpt.community https://chatgpt.com.evil.example"
    )
    assert rw.rewrite(text, GW) == (
        f'src="{GW}/assets/a.js" href="{GW}/c/1" '
        '"http:\\/\\/127.0.0.1:5005\\/x" http://127.0.0.1:5005/ab/v1 '
        "http://127.0.0.1:5005/sandbox/y "
        "https://chatgpt.community https://chatgpt.com.evil.example"
    )


def test_configured_origins_are_rewritten_too() -> None:
    up = Upstreams(site=["http://127.0.0.1:9000"], assets="http://127.0.0.1:9001")
    rw = HostRewriter(up.host_map())
    assert rw.rewrite("http://127.0.0.1:9000/a http://127.0.0.1:9001/b", GW) == f"{GW}/a {GW}/b"


def test_file_host_and_voice_host_replace_their_host_names() -> None:
    rw = HostRewriter(
        UP.host_map(),
        {
            "files.oaiusercontent.com": "http://files.example:8080",
            "webrtc.chatgpt.com": "https://voice.example",
        },
    )
    text = (
        '"https://files.oaiusercontent.com/file-1?sig=x" '
        '"https:\\/\\/files.oaiusercontent.com\\/file-2" '
        "wss://webrtc.chatgpt.com/v1 connect-src webrtc.chatgpt.com files.oaiusercontent.com "
        "myfiles.oaiusercontent.com files.oaiusercontent.community https://chatgpt.com/c"
    )
    assert rw.rewrite(text, "https://gw.test") == (
        '"http://files.example:8080/file-1?sig=x" '
        '"http:\\/\\/files.example:8080\\/file-2" '
        "wss://voice.example/v1 connect-src voice.example files.example:8080 "
        "myfiles.oaiusercontent.com files.oaiusercontent.community https://gw.test/c"
    )
    # Without them, file URLs go through the gateway's /file- route as before.
    plain = HostRewriter(UP.host_map()).rewrite("https://files.oaiusercontent.com/f", "http://g")
    assert plain == "http://g/f"


def test_set_cookie() -> None:
    c = "__cf_bm=abc; Domain=.chatgpt.com; Path=/; Secure; HttpOnly; SameSite=None"
    assert rewrite_set_cookie(c, secure=False) == "__cf_bm=abc; Path=/; HttpOnly; SameSite=Lax"
    assert (
        rewrite_set_cookie(c, secure=True) == "__cf_bm=abc; Path=/; Secure; HttpOnly; SameSite=None"
    )
    assert rewrite_set_cookie("token=evil; Path=/", secure=True) is None


def test_strip_token_cookie() -> None:
    assert strip_token_cookie("a=1; token=seed; b=2") == "a=1; b=2"
    assert strip_token_cookie("token=seed") == ""


BROWSER = [
    ("Host", "127.0.0.1:5005"),
    ("Authorization", "Bearer seed"),
    ("Cookie", "oai-did=d; token=seed"),
    ("Origin", GW),
    ("Referer", GW + "/c/1"),
    ("X-Forwarded-For", "1.2.3.4"),
    ("cf-connecting-ip", "1.2.3.4"),
    ("chatgpt-account-id", "browser"),
    ("Accept-Encoding", "gzip, br"),
    ("oai-device-id", "dev"),
]


def test_request_headers_for_the_site() -> None:
    (site,) = [UP.site]
    out = request_headers(
        BROWSER,
        upstream=site,
        site_origin="https://chatgpt.com",
        gateway_origin=GW,
        access_token="REAL",
        account_id=None,
        keep_account_header=False,
        identity_encoding=False,
    )
    d = dict(out)
    assert d["authorization"] == "Bearer REAL"
    assert d["cookie"] == "oai-did=d"
    assert d["origin"] == "https://chatgpt.com"
    assert d["referer"] == "https://chatgpt.com/c/1"
    assert d["accept-encoding"] == "gzip, br"
    assert d["oai-device-id"] == "dev" and d["Host"] == "127.0.0.1:5005"
    assert not {"X-Forwarded-For", "cf-connecting-ip", "chatgpt-account-id", "Authorization"} & set(
        d
    )


def test_request_headers_for_a_cdn() -> None:
    assets = UP.others[0]
    out = dict(
        request_headers(
            BROWSER,
            upstream=assets,
            site_origin="https://chatgpt.com",
            gateway_origin=GW,
            access_token="REAL",
            account_id="acc",
            keep_account_header=True,
            identity_encoding=True,
        )
    )
    assert "authorization" not in out and "cookie" not in out and "Cookie" not in out
    assert "chatgpt-account-id" not in out and out["accept-encoding"] == "identity"


def test_response_headers() -> None:
    rw = HostRewriter(UP.host_map())
    fields = [
        ("Location", "https://chatgpt.com/auth/login"),
        ("Set-Cookie", "a=1; Domain=chatgpt.com; Secure"),
        ("Set-Cookie", "token=x"),
        ("Strict-Transport-Security", "max-age=1"),
        ("alt-svc", 'h3=":443"'),
        (
            "Content-Security-Policy",
            "script-src https://cdn.oaistatic.com; upgrade-insecure-requests",
        ),
        ("content-type", "text/html"),
    ]
    out = response_headers(fields, rewriter=rw, gateway_origin=GW, secure=False)
    assert out == [
        ("Location", GW + "/auth/login"),
        ("Set-Cookie", "a=1"),
        ("Content-Security-Policy", f"script-src {GW};"),
        ("content-type", "text/html"),
    ]
