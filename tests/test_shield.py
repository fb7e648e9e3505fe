"""The sans-I/O pieces of the listeners' shield (service/shield.py): header and
request-line checks, proxy credentials, proxy destinations, the connection book."""

from __future__ import annotations

import asyncio
import base64
import time
from types import SimpleNamespace

import pytest

from service.shield import (
    ConnectionBook,
    Destinations,
    ProxyCredentials,
    header_problem,
    mask_in_logs,
    mask_text,
    target_problem,
)


@pytest.mark.parametrize("value", [b"a\rb", b"a\nb", b"\x00", b"a\x1bb", b"\x7f"])
def test_control_characters_in_values(value: bytes) -> None:
    assert header_problem([(b"x-a", b"fine"), (b"x-b", value)]) is not None


@pytest.mark.parametrize("value", [b"plain", b"tab\there", "caf\u00e9".encode(), b""])
def test_ordinary_values(value: bytes) -> None:
    assert header_problem([(b"x-a", value)]) is None


@pytest.mark.parametrize("target", [b"/a\xff", b"/a b", b"/\x00", b"/a\x7f"])
def test_bad_request_targets(target: bytes) -> None:
    assert target_problem(target) is not None


def test_good_request_target() -> None:
    assert target_problem(b"/v1/models?x=%FF&y=~") is None


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (basic("u:p:w"), True),
        ("basic " + base64.b64encode(b"u:p:w").decode(), True),
        (basic("u:p:x"), False),
        (basic(""), False),
        ("Basic !!!", False),
        ("Bearer u:p:w", False),
        (None, False),
        ("", False),
    ],
)
def test_proxy_credentials(header: str | None, ok: bool) -> None:
    assert ProxyCredentials("u:p:w").valid(header) is ok


@pytest.mark.parametrize(
    ("host", "port", "refused"),
    [
        ("api.openai.com", 443, False),  # intercepted: answered locally
        ("127.0.0.1", 6379, True),
        ("LOCALHOST", 6379, True),
        ("0x7f000001", 6379, True),
        ("2130706433", 6379, True),
        ("127.1", 6379, True),
        ("[::ffff:127.0.0.1]", 6379, True),
        ("0.0.0.0", 80, True),
        ("10.1.2.3", 80, True),
        ("169.254.169.254", 80, True),
        ("localhost", 8443, False),  # listed by host:port
        ("127.0.0.1", 8443, False),
        ("127.0.0.1", 8444, True),
        ("8.8.8.8", 443, False),
        ("no-such-host.invalid", 443, True),
    ],
)
def test_destinations(host: str, port: int, refused: bool) -> None:
    destinations = Destinations(
        allow=("localhost:8443", "127.0.0.1:8443"),
        intercept=("api.openai.com",),
        listener_ports=lambda: [5005],
    )
    verdict = asyncio.run(destinations.check(host, port))
    assert (verdict.refused is not None) is refused, verdict


def test_a_listed_host_does_not_open_the_proxys_own_listeners() -> None:
    destinations = Destinations(
        allow=("127.0.0.1", "localhost:5005"), intercept=(), listener_ports=lambda: [5005, 8080]
    )
    assert asyncio.run(destinations.check("127.0.0.1", 6379)).refused is None
    assert asyncio.run(destinations.check("127.0.0.1", 8080)).refused is not None
    assert asyncio.run(destinations.check("localhost", 5005)).refused is None  # listed so


def test_own_listener_on_a_public_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import service.shield as shield

    monkeypatch.setattr(shield, "is_local", lambda ip: True)
    destinations = Destinations(allow=(), intercept=(), listener_ports=lambda: [5005])
    assert asyncio.run(destinations.check("8.8.8.8", 5005)).refused is not None
    assert asyncio.run(destinations.check("8.8.8.8", 443)).refused is None


def test_connection_book_counts_and_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    book = ConnectionBook(per_address=2, header_timeout=5)
    assert book.opened("a", "1.1.1.1") and book.opened("b", "1.1.1.1")
    assert not book.opened("c", "1.1.1.1")
    assert book.opened("d", "2.2.2.2")
    book.closed("a")
    assert book.opened("e", "1.1.1.1")
    flow = SimpleNamespace(live=True)
    book.request("b", flow)
    book.exempt("d")
    now[0] += 6
    assert book.overdue() == ["e"]  # b has a live request, d is a tunnel
    flow.live = False
    assert book.overdue() == ["e"]  # b is idle from now on
    now[0] += 6
    assert sorted(book.overdue()) == ["b", "e"]


def test_prefix_masking() -> None:
    mask_in_logs("s3cret-prefix")
    try:
        assert mask_text("GET /s3cret-prefix/v1/models") == "GET /<api_prefix>/v1/models"
        assert mask_text("GET http://h/s3cret-pr\u2026") == "GET http://h/<api_prefix>\u2026"
    finally:
        mask_in_logs(None)
    assert mask_text("GET /s3cret-prefix/v1") == "GET /s3cret-prefix/v1"
