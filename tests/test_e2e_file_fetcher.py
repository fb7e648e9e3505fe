"""``CF_FILE_URL`` end to end: the openai SDK through a running mitmdump, the emulator
as the backend, and a small fetcher service on loopback (docs/file-fetcher.md).

chat2api never fetches the client's URL itself: it POSTs ``{"file_url": URL}`` to the
fetcher and uploads the fetcher's answer, within ``media_max_bytes``. The client's
URL names a host nobody can resolve here, so only the fetcher path can succeed.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakechatgpt.harness import Emulator, mint_access_token, received, reset
from tests.fakechatgpt.state import FAKE_PNG
from tests.support.clients import reverse_env, run_client
from tests.support.mitm import Mitm, MitmFactory

CHAT = r"""
import os, openai
spec = json.loads(os.environ["C2A_SPEC"])
client = openai.OpenAI(max_retries=0, timeout=60)
try:
    resp = client.chat.completions.create(**spec)
    emit({"text": resp.choices[0].message.content})
except openai.APIStatusError as e:
    emit({"error": {"status": e.status_code, "body": e.body}})
"""

MAX_BYTES = 4096
IMAGE_URL = "https://images.example.invalid/cat.png"


class Fetcher:
    """The operator's fetcher: records what it was asked, answers ``self.answer``."""

    def __init__(self) -> None:
        self.asked: list[Any] = []
        self.answer: tuple[int, str, bytes] = (200, "image/png", FAKE_PNG)
        fetcher = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("content-length") or 0)
                fetcher.asked.append(json.loads(self.rfile.read(length)))
                status, kind, body = fetcher.answer
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/fetch"


@pytest.fixture(scope="module")
def fetcher() -> Iterator[Fetcher]:
    f = Fetcher()
    thread = threading.Thread(target=f.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f
    finally:
        f.server.shutdown()
        f.server.server_close()


@pytest.fixture(scope="module")
def chat2api_options(fetcher: Fetcher) -> dict[str, Any]:
    env = {
        "CF_FILE_URL": fetcher.url,  # on loopback: the operator's own service is trusted
        "MEDIA_MAX_BYTES": str(MAX_BYTES),
        "MEDIA_POLL_INTERVAL": "0.2",
    }
    return {"env": env}


@pytest.fixture(autouse=True)
def clean(emulator: Emulator, fetcher: Fetcher) -> None:
    reset(emulator.url)
    fetcher.asked.clear()
    fetcher.answer = (200, "image/png", FAKE_PNG)


def chat(mitm: Mitm, url: str) -> dict[str, Any]:
    spec = {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    }
    env = {**reverse_env(mitm, mint_access_token()), "C2A_SPEC": json.dumps(spec)}
    (out,) = run_client(CHAT, env, timeout=90)
    assert isinstance(out, dict)
    return out


def test_the_fetcher_is_asked_and_its_answer_is_uploaded(
    emulator: Emulator, fetcher: Fetcher, mitm: Mitm
) -> None:
    out = chat(mitm, IMAGE_URL)
    assert "error" not in out and out["text"]
    assert fetcher.asked == [{"file_url": IMAGE_URL}]
    log = received(emulator.url)
    (create,) = [json.loads(r["body"]) for r in log if r["path"] == "/backend-api/files"]
    assert create["use_case"] == "multimodal" and create["file_size"] == len(FAKE_PNG)
    (put,) = [r for r in log if r["method"] == "PUT"]
    assert int(put["headers"]["content-length"]) == len(FAKE_PNG)
    (turn,) = [r for r in log if r["method"] == "POST" and r["path"].endswith("/conversation")]
    message = json.loads(turn["body"])["messages"][0]
    (pointer,) = message["content"]["parts"][1:]
    assert (pointer["width"], pointer["height"], pointer["size_bytes"]) == (8, 8, len(FAKE_PNG))
    assert message["metadata"]["attachments"][0]["mime_type"] == "image/png"


@pytest.mark.parametrize(
    ("answer", "url", "why"),
    [
        ((404, "text/plain", b"gone"), IMAGE_URL, "answered HTTP 404"),
        ((200, "image/png", FAKE_PNG * 60), IMAGE_URL, "media_max_bytes"),
        ((200, "image/png", FAKE_PNG), "http://127.0.0.1:8080/cat.png", "local or private"),
        ((200, "image/png", FAKE_PNG), "ftp://images.example.invalid/cat.png", "only http(s)"),
    ],
    ids=["fetcher-404", "too-big", "loopback-url", "ftp-url"],
)
def test_what_the_fetcher_cannot_give_is_a_400_naming_the_part(
    emulator: Emulator,
    fetcher: Fetcher,
    mitm: Mitm,
    answer: tuple[int, str, bytes],
    url: str,
    why: str,
) -> None:
    fetcher.answer = answer
    out = chat(mitm, url)
    assert out["error"]["status"] == 400, out
    error = out["error"]["body"]
    assert error["param"] == "messages[0].content[1]" and why in error["message"]
    assert fetcher.url not in json.dumps(error)
    assert fetcher.asked == (
        [] if why in ("local or private", "only http(s)") else [{"file_url": url}]
    )
    assert not [r for r in received(emulator.url) if r["path"].startswith("/backend-api/")]


def test_without_it_the_url_is_fetched_directly(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path: Path
) -> None:
    """The same URL without CF_FILE_URL: chat2api tries to resolve it itself and fails."""
    with mitm_factory.run(tmp=tmp_path, env={"CHATGPT_BASE_URL": emulator.url}) as m:
        out = chat(m, IMAGE_URL)
    assert out["error"]["status"] == 400
    assert "cannot be resolved" in out["error"]["body"]["message"]
