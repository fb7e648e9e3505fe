"""Media end to end: the official openai SDK through a running mitmdump, answered by the
backend emulator.

Images by URL and by base64 and documents as ``file`` parts must reach the emulator's
upload flow byte for byte and appear in the conversation message; generated images
(streamed and asynchronous) come back as markdown links in order; user URLs to local
addresses are refused; ``client.images.generate`` works in both response formats.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from typing import Any

import pytest

from tests.fakechatgpt.harness import (
    Emulator,
    next_plan,
    received,
)
from tests.fakechatgpt.state import FAKE_PNG
from tests.support.clients import reverse_env, run_client
from tests.support.mitm import Mitm, MitmFactory

CHAT = r"""
import os, openai
spec = json.loads(os.environ["C2A_SPEC"])
client = openai.OpenAI(max_retries=0, timeout=60)
out = {"text": "", "reasoning": ""}
try:
    if spec.get("stream"):
        for chunk in client.chat.completions.create(stream=True, **spec["kwargs"]):
            for choice in chunk.choices:
                out["text"] += choice.delta.content or ""
                out["reasoning"] += (choice.delta.model_extra or {}).get("reasoning_content") or ""
    else:
        resp = client.chat.completions.create(**spec["kwargs"])
        out["text"] = resp.choices[0].message.content
except openai.APIStatusError as e:
    out["error"] = {"status": e.status_code, "body": e.body}
emit(out)
"""

IMAGES = r"""
import os, openai
spec = json.loads(os.environ["C2A_SPEC"])
client = openai.OpenAI(max_retries=0, timeout=60)
resp = client.images.generate(**spec["kwargs"])
emit({"created": resp.created, "data": [d.model_dump() for d in resp.data]})
"""

LINK = re.compile(r"!\[image\]\((http[^)\s]+)\)")


@pytest.fixture(scope="module")
def chat2api_options(emulator: Emulator) -> dict[str, Any]:
    env = {
        # The emulator serves the test images from 127.0.0.1: allow exactly that host:port.
        "MEDIA_ALLOW_HOSTS": f"127.0.0.1:{emulator.port}",
        "MEDIA_POLL_INTERVAL": "0.2",
    }
    return {"env": env}


def chat(mitm: Mitm, token: str, *, stream: bool = False, **kwargs: Any) -> dict[str, Any]:
    spec = {"stream": stream, "kwargs": {"model": "gpt-4o", **kwargs}}
    env = {**reverse_env(mitm, token), "C2A_SPEC": json.dumps(spec)}
    (out,) = run_client(CHAT, env, timeout=90)
    assert isinstance(out, dict)
    return out


def conversation_body(emulator: Emulator) -> dict[str, Any]:
    (call,) = [
        r
        for r in received(emulator.url)
        if r["method"] == "POST" and r["path"].endswith("/conversation")
    ]
    body: dict[str, Any] = json.loads(call["body"])
    return body


def stored_bytes(emulator: Emulator, file_id: str) -> bytes:
    """What the emulator's blob store holds for ``file_id`` (read back with its signature)."""
    (put,) = [r for r in received(emulator.url) if r["method"] == "PUT" and file_id in r["path"]]
    with urllib.request.urlopen(f"{emulator.url}{put['path']}?{put['query']}") as rsp:
        data: bytes = rsp.read()
    return data


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# -- media in ------------------------------------------------------------------


def test_images_by_url_and_base64_are_uploaded_byte_for_byte(
    emulator: Emulator, mitm: Mitm, token: str
) -> None:
    out = chat(
        mitm,
        token,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What are these?"},
                    {"type": "image_url", "image_url": {"url": f"{emulator.url}/_fake/image.png"}},
                    {"type": "image_url", "image_url": {"url": data_url("image/png", FAKE_PNG)}},
                ],
            }
        ],
    )
    assert "error" not in out and out["text"]
    body = conversation_body(emulator)
    message = body["messages"][0]
    assert message["content"]["content_type"] == "multimodal_text"
    text, *pointers = message["content"]["parts"]
    assert text == "What are these?"
    attachments = message["metadata"]["attachments"]
    assert len(pointers) == len(attachments) == 2
    for pointer, attachment in zip(pointers, attachments, strict=True):
        assert pointer["content_type"] == "image_asset_pointer"
        assert pointer["asset_pointer"].endswith("://" + attachment["id"])
        assert (pointer["width"], pointer["height"], pointer["size_bytes"]) == (8, 8, len(FAKE_PNG))
        assert attachment["mime_type"] == "image/png"
        assert (attachment["width"], attachment["height"]) == (8, 8)
        assert stored_bytes(emulator, attachment["id"]) == FAKE_PNG
    creates = [
        json.loads(r["body"])
        for r in received(emulator.url)
        if r["method"] == "POST" and r["path"].endswith("/files")
    ]
    assert [c["use_case"] for c in creates] == ["multimodal", "multimodal"]


def test_a_document_reaches_the_upload_flow_and_the_attachments(
    emulator: Emulator, mitm: Mitm, token: str
) -> None:
    document = "Quarterly notes\n\nRevenue: up. Costs: down. ✓\n".encode()
    out = chat(
        mitm,
        token,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "file",
                        "file": {
                            "filename": "notes.md",
                            "file_data": data_url("text/markdown", document),
                        },
                    },
                    {"type": "text", "text": "Summarise the file."},
                ],
            }
        ],
    )
    assert "error" not in out and out["text"]
    calls = [(r["method"], re.sub(r"file-[\w-]+", "ID", r["path"])) for r in received(emulator.url)]
    assert calls[:4] == [
        ("POST", "/backend-api/files"),
        ("PUT", "/_blob/ID"),
        ("POST", "/backend-api/files/ID/uploaded"),
        ("GET", "/backend-api/files/ID"),  # waiting for the retrieval index
    ]
    message = conversation_body(emulator)["messages"][0]
    (attachment,) = message["metadata"]["attachments"]
    assert attachment["name"] == "notes.md"
    assert attachment["mime_type"] == "text/markdown"
    assert attachment["size"] == len(document)
    assert stored_bytes(emulator, attachment["id"]) == document
    # A document is an attachment only, not an image pointer.
    assert message["content"]["parts"] == ["Summarise the file."]


def test_a_part_that_cannot_be_fetched_is_a_400_naming_it(mitm: Mitm, token: str) -> None:
    out = chat(
        mitm,
        token,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFu"}},
                ],
            }
        ],
    )
    assert out["error"]["status"] == 400
    assert out["error"]["body"]["param"] == "messages[0].content[1]"


# -- generated images ----------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_two_generated_images_become_two_links_in_order(
    emulator: Emulator, mitm: Mitm, token: str, stream: bool
) -> None:
    out = chat(
        mitm,
        token,
        stream=stream,
        model="gpt-4o-image",
        messages=[{"role": "user", "content": "Draw a lighthouse."}],
    )
    links = LINK.findall(out["text"])
    # The emulator's turn has a sediment image, then a file-service one.
    assert len(links) == 2
    assert "/_blob/file_" in links[0] and "/_blob/file-" in links[1]
    for link in links:
        with urllib.request.urlopen(link) as rsp:
            assert rsp.read() == FAKE_PNG


def test_async_image_generation_is_polled_into_links(
    emulator: Emulator, mitm: Mitm, token: str
) -> None:
    next_plan(emulator.url, async_image=True, async_ready_ms=800)
    out = chat(
        mitm,
        token,
        stream=True,
        messages=[{"role": "user", "content": "Draw a fox."}],
        extra_body={"history_disabled": False},
    )
    assert len(LINK.findall(out["text"])) == 2
    assert "waiting for it" in out["reasoning"]
    polls = [
        r for r in received(emulator.url) if r["method"] == "GET" and "/conversation/" in r["path"]
    ]
    assert len([p for p in polls if "/attachment/" not in p["path"]]) >= 2


def test_async_image_without_history_ends_with_a_clear_message(
    emulator: Emulator, mitm: Mitm, token: str
) -> None:
    next_plan(emulator.url, async_image=True)
    out = chat(mitm, token, messages=[{"role": "user", "content": "Draw a fox."}])
    assert "error" not in out
    assert LINK.findall(out["text"]) == []
    assert "history" in out["text"]


def test_sandbox_links_become_download_urls_with_history(
    emulator: Emulator, mitm: Mitm, token: str
) -> None:
    next_plan(emulator.url, answer="Done: [out.csv](sandbox:/mnt/data/out.csv).")
    out = chat(
        mitm,
        token,
        messages=[{"role": "user", "content": "Make a CSV."}],
        extra_body={"history_disabled": False},
    )
    (url,) = re.findall(r"\[out\.csv\]\(([^)]+)\)", out["text"])
    with urllib.request.urlopen(url) as rsp:
        assert rsp.read() == b"sandbox file /mnt/data/out.csv\n"


def test_a_gpt_model_name_becomes_a_gizmo_interaction(
    emulator: Emulator, mitm: Mitm, token: str
) -> None:
    out = chat(
        mitm, token, model="gpt-4-gizmo-g-abc123", messages=[{"role": "user", "content": "hi"}]
    )
    assert "error" not in out
    body = conversation_body(emulator)
    assert body["conversation_mode"] == {"kind": "gizmo_interaction", "gizmo_id": "g-abc123"}


@pytest.mark.parametrize("response_format", ["url", "b64_json"])
def test_images_generate(emulator: Emulator, mitm: Mitm, token: str, response_format: str) -> None:
    spec = {
        "kwargs": {
            "model": "gpt-image-1",
            "prompt": "A red kite",
            "response_format": response_format,
        }
    }
    env = {**reverse_env(mitm, token), "C2A_SPEC": json.dumps(spec)}
    (out,) = run_client(IMAGES, env, timeout=90)
    (image,) = out["data"]
    if response_format == "url":
        with urllib.request.urlopen(image["url"]) as rsp:
            assert rsp.read() == FAKE_PNG
    else:
        assert base64.b64decode(image["b64_json"]) == FAKE_PNG
    body = conversation_body(emulator)
    assert body["system_hints"] == ["picture_v2"]
    assert "A red kite" in body["messages"][0]["content"]["parts"][0]


# -- the request forgery guard ---------------------------------------------------


@pytest.fixture(scope="module")
def guarded(emulator: Emulator, module_mitm_factory: MitmFactory) -> Mitm:
    """chat2api with the allow-list off."""
    return module_mitm_factory(emulator_url=emulator.url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/_fake/image.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/cat.png",
        "http://localhost:{port}/_fake/image.png",
        "http://[::1]:{port}/_fake/image.png",
    ],
)
def test_urls_to_local_addresses_are_refused(
    emulator: Emulator, guarded: Mitm, token: str, url: str
) -> None:
    out = chat(
        guarded,
        token,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": url.format(port=emulator.port)}},
                ],
            }
        ],
    )
    assert out["error"]["status"] == 400
    error = out["error"]["body"]
    assert error["param"] == "messages[0].content[1]"
    assert "refused" in error["message"]
    # Nothing was uploaded and no conversation was started.
    assert [r for r in received(emulator.url) if r["path"].startswith("/backend-api")] == []
