"""service/uploads.py: image headers, data: URLs, the request forgery guard, fetching
(against a local HTTP server) and the upload flow (against a recording fake backend)."""

from __future__ import annotations

import asyncio
import base64
import http.server
import ipaddress
import random
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from accounts.pool import Credential, Outcome, Source
from service.uploads import (
    Blob,
    MediaFetcher,
    MediaLimits,
    MediaRefused,
    Uploader,
    UrlGuard,
    forbidden_address,
    parse_data_url,
    sniff_image,
    use_case_for,
)
from tests.fakechatgpt.state import make_png
from translator.request import (
    ChatRequest,
    FilePart,
    ImagePart,
    InputAudioPart,
    Message,
    TextPart,
    split_leading_urls,
)
from upstream.context import make_context
from upstream.http import HttpAnswer

PNG = make_png(3, 5, (1, 2, 3))
GIF = b"GIF89a" + struct.pack("<HH", 7, 9) + b"\x00" * 20
# A minimal JPEG: SOI, an APP0 segment to skip, then SOF0 with 6x4.
JPEG = (
    b"\xff\xd8"
    + b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    + b"\xff\xc0\x00\x11\x08\x00\x04\x00\x06\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    + b"\xff\xd9"
)
WEBP_VP8X = (
    b"RIFF\x00\x00\x00\x00WEBPVP8X"
    + b"\x0a\x00\x00\x00"
    + b"\x00" * 4
    + ((99).to_bytes(3, "little") + (49).to_bytes(3, "little"))
)
WEBP_VP8L = (
    b"RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00\x2f"
    + ((15 - 1) | ((25 - 1) << 14)).to_bytes(4, "little")
    + b"\x00" * 8
)
WEBP_VP8 = (
    b"RIFF\x00\x00\x00\x00WEBPVP8 \x00\x00\x00\x00"
    + b"\x00\x00\x00\x9d\x01\x2a"
    + struct.pack("<HH", 30, 20)
    + b"\x00" * 4
)


# -- pure helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PNG, ("image/png", 3, 5)),
        (GIF, ("image/gif", 7, 9)),
        (JPEG, ("image/jpeg", 6, 4)),
        (WEBP_VP8X, ("image/webp", 100, 50)),
        (WEBP_VP8L, ("image/webp", 15, 25)),
        (WEBP_VP8, ("image/webp", 30, 20)),
        (b"%PDF-1.7\n", None),
        (b"", None),
        (b"\xff\xd8\xff", None),
    ],
)
def test_sniff_image(data: bytes, expected: tuple[str, int, int] | None) -> None:
    assert sniff_image(data) == expected


@pytest.mark.parametrize("data", [PNG, GIF, JPEG, WEBP_VP8X, WEBP_VP8L, WEBP_VP8])
def test_sniff_image_never_fails_on_truncated_headers(data: bytes) -> None:
    for cut in range(len(data)):
        result = sniff_image(data[:cut])
        assert result is None or result[0].startswith("image/")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("data:image/png;base64," + base64.b64encode(PNG).decode(), ("image/png", PNG)),
        ("data:image/png;base64," + base64.urlsafe_b64encode(PNG).decode(), ("image/png", PNG)),
        ("DATA:Text/Plain;charset=utf-8;base64,aGk=", ("text/plain", b"hi")),
        ("data:;base64,aGk", ("text/plain", b"hi")),  # padding left out
        ("data:text/plain,a%20b", ("text/plain", b"a b")),
        ("data:application/pdf;base64,JVBE\nRi0x", ("application/pdf", b"%PDF-1")),
    ],
)
def test_parse_data_url(url: str, expected: tuple[str, bytes]) -> None:
    assert parse_data_url(url) == expected


@pytest.mark.parametrize("url", ["https://x/y.png", "data:image/png;base64", "data:;base64,a!b"])
def test_parse_data_url_refuses(url: str) -> None:
    with pytest.raises(ValueError):
        parse_data_url(url)


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("10.0.0.1", True),
        ("172.16.5.4", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),  # AWS, GCP, Azure IMDS
        ("100.100.100.200", True),  # Alibaba metadata (shared address space)
        ("168.63.129.16", True),  # Azure wire server
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00:ec2::254", True),  # AWS IMDS over IPv6
        ("::ffff:127.0.0.1", True),  # IPv4-mapped
        ("::ffff:10.1.2.3", True),
        ("2002:7f00:1::", True),  # 6to4 around 127.0.0.1
        ("64:ff9b::a9fe:a9fe", True),  # NAT64 around 169.254.169.254
        ("::127.0.0.1", True),  # IPv4-compatible (deprecated), routed to 127.0.0.1
        ("::ffff:0:127.0.0.1", True),  # SIIT IPv4-translated
        ("::8.8.8.8", True),  # any IPv4-compatible form: never a real destination
        ("64:ff9b:1::7f00:1", True),  # local-use NAT64
        ("93.184.216.34", False),
        ("8.8.8.8", False),
        ("2606:4700::1111", False),
        ("::ffff:8.8.8.8", False),
    ],
)
def test_forbidden_address(address: str, forbidden: bool) -> None:
    assert forbidden_address(ipaddress.ip_address(address)) is forbidden


@pytest.mark.parametrize(
    ("text", "urls", "rest"),
    [
        ("https://a/x.png what is this?", ("https://a/x.png",), "what is this?"),
        ("http://a/1 https://b/2\nboth?", ("http://a/1", "https://b/2"), "both?"),
        ("https://a/x.png", ("https://a/x.png",), ""),
        ("look at https://a/x.png", (), "look at https://a/x.png"),
        ("httpx is a library", (), "httpx is a library"),
        ("", (), ""),
    ],
)
def test_split_leading_urls(text: str, urls: tuple[str, ...], rest: str) -> None:
    assert split_leading_urls(text) == (urls, rest)


def test_use_case_follows_the_original_classification() -> None:
    assert use_case_for("image/png") == "multimodal"
    assert use_case_for("application/pdf") == "my_files"
    assert use_case_for("text/markdown") == "my_files"
    assert use_case_for("text/csv") == "ace_upload"
    assert use_case_for("application/zip") == "ace_upload"


# -- the guard -----------------------------------------------------------------------


def test_guard_refuses_a_name_that_resolves_to_loopback() -> None:
    with pytest.raises(ValueError, match="local or private"):
        asyncio.run(UrlGuard(()).addresses("localhost", 80))


def test_guard_allow_list_by_host_or_host_and_port() -> None:
    guard = UrlGuard(("127.0.0.1:8080", "localhost"))
    assert asyncio.run(guard.addresses("127.0.0.1", 8080)) == ["127.0.0.1"]
    assert "127.0.0.1" in asyncio.run(guard.addresses("localhost", 1))
    with pytest.raises(ValueError):
        asyncio.run(guard.addresses("127.0.0.1", 8081))


def test_guard_refuses_unresolvable_names() -> None:
    with pytest.raises(ValueError, match="cannot be resolved"):
        asyncio.run(UrlGuard(()).addresses("no-such-host.invalid", 80))


# -- fetching ------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        status, headers, body = self.routes.get(self.path, (404, {}, b"not found"))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = httpd.server_address[1]
    _Handler.routes = {
        "/cat.png": (200, {"content-type": "application/octet-stream"}, PNG),
        "/doc.pdf": (200, {"content-type": "application/pdf; qs=1"}, b"%PDF-1.7 body"),
        "/page": (200, {"content-type": "text/html"}, b"<html>hi</html>"),
        "/fake.png": (200, {"content-type": "image/png"}, b"not really a png"),
        "/big": (200, {"content-type": "image/png"}, PNG + b"\x00" * 5000),
        "/hop": (302, {"location": "/cat.png"}, b""),
        "/escape": (302, {"location": f"http://localhost:{port}/cat.png"}, b""),
        "/loop": (302, {"location": "/loop"}, b""),
    }
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield port
    httpd.shutdown()
    httpd.server_close()


def fetcher(port: int, **limits: Any) -> MediaFetcher:
    return MediaFetcher(MediaLimits(allow_hosts=(f"127.0.0.1:{port}",), **limits))


def fetch(f: MediaFetcher, part: Any) -> Blob:
    return asyncio.run(f.fetch_part("messages[0].content[1]", part))


def test_fetch_sniffs_the_real_type_and_size(server: int) -> None:
    blob = fetch(fetcher(server), ImagePart(url=f"http://127.0.0.1:{server}/cat.png"))
    assert (blob.data, blob.mime_type, blob.width, blob.height) == (PNG, "image/png", 3, 5)
    assert blob.name == "cat.png"


def test_fetch_by_name_connects_to_the_checked_address(server: int) -> None:
    # "localhost" is resolved by the guard and pinned for curl (CURLOPT_RESOLVE).
    f = MediaFetcher(MediaLimits(allow_hosts=(f"localhost:{server}",)))
    blob = fetch(f, ImagePart(url=f"http://localhost:{server}/cat.png"))
    assert blob.data == PNG


def test_curl_never_resolves_the_name_again(server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The name does not exist in DNS: only the pinned address can make this work.
    async def checked(self: UrlGuard, host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    monkeypatch.setattr(UrlGuard, "addresses", checked)
    blob = fetch(
        MediaFetcher(MediaLimits()), ImagePart(url=f"http://pinned.invalid:{server}/cat.png")
    )
    assert blob.data == PNG


def test_fetch_follows_redirects_on_allowed_hosts(server: int) -> None:
    blob = fetch(fetcher(server), ImagePart(url=f"http://127.0.0.1:{server}/hop"))
    assert blob.data == PNG


def test_a_document_behind_an_image_url_is_kept_as_a_document(server: int) -> None:
    blob = fetch(fetcher(server), ImagePart(url=f"http://127.0.0.1:{server}/doc.pdf"))
    assert (blob.mime_type, blob.is_image) == ("application/pdf", False)


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("/escape", "localhost.*refused"),  # each redirect hop is checked again
        ("/loop", "too many redirects"),
        ("/missing", "HTTP 404"),
        ("/page", "web page"),
        ("/fake.png", "not a PNG, JPEG, GIF or WebP"),
        ("/big", "larger than the limit of 1024 bytes"),
    ],
)
def test_fetch_refusals_name_the_part(server: int, path: str, match: str) -> None:
    with pytest.raises(MediaRefused, match=match) as info:
        fetch(fetcher(server, max_bytes=1024), ImagePart(url=f"http://127.0.0.1:{server}{path}"))
    assert info.value.status == 400
    assert info.value.param == "messages[0].content[1]"


def test_fetch_without_the_allow_list_refuses_loopback(server: int) -> None:
    with pytest.raises(MediaRefused, match="local or private"):
        fetch(MediaFetcher(MediaLimits()), ImagePart(url=f"http://127.0.0.1:{server}/cat.png"))


def test_fetch_time_limit() -> None:
    # A listening socket that never answers.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        f = fetcher(port, fetch_timeout=0.3)
        with pytest.raises(MediaRefused, match="longer than 0.3 s"):
            fetch(f, ImagePart(url=f"http://127.0.0.1:{port}/slow.png"))


@pytest.mark.parametrize(
    ("part", "mime", "name"),
    [
        (
            FilePart(file_data="data:application/pdf;base64,JVBERi0x", filename="a.pdf"),
            "application/pdf",
            "a.pdf",
        ),
        (FilePart(file_data="aGVsbG8=", filename="notes.md"), "text/markdown", "notes.md"),
        (
            FilePart(file_data="data:application/octet-stream;base64,aGk=", filename="x.txt"),
            "text/plain",
            "x.txt",
        ),
        (InputAudioPart(data="UklGRg==", format="wav"), "audio/wav", "audio.wav"),
    ],
)
def test_inline_parts(part: Any, mime: str, name: str) -> None:
    blob = fetch(MediaFetcher(MediaLimits()), part)
    assert (blob.mime_type, blob.name) == (mime, name)


@pytest.mark.parametrize(
    ("part", "match"),
    [
        (FilePart(file_id="file-abc"), "file id cannot be fetched"),
        (FilePart(file_data="not base64!!"), "base64"),
        (ImagePart(url="data:image/png;base64,"), "empty"),
        (ImagePart(url="ftp://example.com/x.png"), "only http"),
        (ImagePart(url="data:image/png;base64,aGVsbG8="), "not a PNG"),
    ],
)
def test_inline_refusals(part: Any, match: str) -> None:
    with pytest.raises(MediaRefused, match=match):
        fetch(MediaFetcher(MediaLimits()), part)


def test_fetch_all_names_the_failing_part() -> None:
    req = ChatRequest(
        model="gpt-4o",
        messages=(
            Message(role="system", content=(TextPart(text="be brief"),)),
            Message(
                role="user",
                content=(
                    TextPart(text="look"),
                    ImagePart(url="data:image/png;base64," + base64.b64encode(PNG).decode()),
                    ImagePart(url="http://10.0.0.1/x.png"),
                ),
            ),
        ),
    )
    f = MediaFetcher(MediaLimits())
    with pytest.raises(MediaRefused) as info:
        asyncio.run(f.fetch_all(req))
    assert info.value.param == "messages[1].content[2]"


def test_upload_by_url_turns_leading_urls_into_image_parts() -> None:
    req = ChatRequest(
        model="gpt-4o",
        messages=(
            Message(role="user", content=(TextPart(text="https://a/x.png https://b/y.pdf why?"),)),
            Message(role="assistant", content=(TextPart(text="https://a/x.png"),)),
        ),
    )
    assert MediaFetcher(MediaLimits()).prepare(req) is req
    out = MediaFetcher(MediaLimits(upload_by_url=True)).prepare(req)
    assert out.messages[0].content == (
        TextPart(text="why?"),
        ImagePart(url="https://a/x.png"),
        ImagePart(url="https://b/y.pdf"),
    )
    assert out.messages[1] == req.messages[1]


# -- uploading -----------------------------------------------------------------------


class FakeBackend:
    """Answers the upload flow like the real backend and records every call."""

    def __init__(self, *, create_status: int = 200, index: list[str] | None = None) -> None:
        self.calls: list[tuple[str, str, dict[str, str], Any]] = []
        self.create_status = create_status
        self.index = index or ["success"]

    async def request(self, method: str, url: str, **kw: Any) -> HttpAnswer:
        body = kw.get("json_body") if kw.get("data") is None else kw["data"]
        self.calls.append((method, url, dict(kw["headers"]), body))
        if method == "POST" and url.endswith("/files"):
            if self.create_status != 200:
                return _json(self.create_status, {"detail": {"message": "slow down"}})
            return _json(200, {"file_id": "file-1", "upload_url": "https://blob.example/u?sig=s"})
        if method == "PUT":
            return HttpAnswer(status=201, headers={}, body=b"")
        if url.endswith("/uploaded"):
            return _json(200, {"status": "success", "download_url": "https://x/d"})
        if method == "GET":
            status = self.index.pop(0) if len(self.index) > 1 else self.index[0]
            return _json(200, {"retrieval_index_status": status})
        raise AssertionError(url)


def _json(status: int, obj: Any) -> HttpAnswer:
    import json

    return HttpAnswer(
        status=status, headers={"content-type": "application/json"}, body=json.dumps(obj).encode()
    )


def ctx() -> Any:
    credential = Credential(source=Source.DIRECT, access_token="at", token="at")
    return make_context(
        origins=("https://chatgpt.example",),
        credential=credential,
        language="en-US",
        auth_key=None,
        proxy=None,
        rng=random.Random(1),
    )


def test_upload_flow_for_an_image() -> None:
    backend = FakeBackend()
    uploader = Uploader(backend)  # type: ignore[arg-type]
    blob = Blob(where="w", data=PNG, mime_type="image/png", width=3, height=5)
    attachment = asyncio.run(uploader.upload(ctx(), blob, timezone_offset_min=-60))
    assert (attachment.file_id, attachment.size, attachment.is_image) == ("file-1", len(PNG), True)
    assert (attachment.width, attachment.height, attachment.mime_type) == (3, 5, "image/png")
    assert attachment.name.endswith(".png")
    (m1, u1, _, create), (m2, u2, put_headers, data), (m3, u3, _, _) = backend.calls
    assert (m1, u1) == ("POST", "https://chatgpt.example/backend-api/files")
    assert create == {
        "file_name": attachment.name,
        "file_size": len(PNG),
        "use_case": "multimodal",
        "timezone_offset_min": -60,
        "reset_rate_limits": False,
    }
    assert (m2, u2, data) == ("PUT", "https://blob.example/u?sig=s", PNG)
    assert put_headers["x-ms-blob-type"] == "BlockBlob"
    assert put_headers["x-ms-version"] == "2020-04-08"
    assert put_headers["content-type"] == "image/png"
    assert "authorization" not in put_headers and "oai-device-id" not in put_headers
    assert (m3, u3) == ("POST", "https://chatgpt.example/backend-api/files/file-1/uploaded")


def test_documents_wait_for_the_retrieval_index() -> None:
    backend = FakeBackend(index=["pending", "pending", "success"])
    uploader = Uploader(backend, index_interval=0.01)  # type: ignore[arg-type]
    blob = Blob(where="w", data=b"# notes", mime_type="text/markdown", name="notes.md")
    attachment = asyncio.run(uploader.upload(ctx(), blob, timezone_offset_min=0))
    assert attachment.name == "notes.md" and not attachment.is_image
    assert [c[0] for c in backend.calls].count("GET") == 3


def test_an_upload_refused_for_the_account_is_a_400_that_may_be_retried() -> None:
    uploader = Uploader(FakeBackend(create_status=429))  # type: ignore[arg-type]
    blob = Blob(where="messages[0].content[0]", data=PNG, mime_type="image/png", width=3, height=5)
    with pytest.raises(MediaRefused, match="slow down") as info:
        asyncio.run(uploader.upload(ctx(), blob, timezone_offset_min=0))
    assert info.value.status == 400 and info.value.param == "messages[0].content[0]"
    assert info.value.outcome is Outcome.RATE_LIMITED  # type: ignore[attr-defined]
