"""service/media.py: download lookups, sandbox links and the asynchronous image poll,
against a fake backend that answers like the real one (download fixtures from
``fixtures/chatgpt/other/heygen_files_download_*``)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import pytest

from accounts.pool import Credential, Source
from service.media import MediaResolver, async_images
from tests.support.captures import FIXTURES as CAPTURES
from translator import answer as tr
from upstream.context import make_context
from upstream.http import HttpAnswer

FIXTURES = CAPTURES / "other"
CID = "69eb5a4b-282c-83ea-b4f6-91ba9510bc9f"


def ctx() -> Any:
    return make_context(
        origins=("https://chatgpt.example",),
        credential=Credential(source=Source.DIRECT, access_token="at", token="at"),
        language="en-US",
        auth_key=None,
        proxy=None,
        rng=random.Random(2),
    )


class Backend:
    def __init__(self, answers: dict[str, list[tuple[int, Any]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def request(self, method: str, url: str, **kw: Any) -> HttpAnswer:
        path = url.removeprefix("https://chatgpt.example/backend-api")
        self.calls.append(path)
        for prefix, queue in self.answers.items():
            if path.startswith(prefix):
                status, obj = queue.pop(0) if len(queue) > 1 else queue[0]
                body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
                return HttpAnswer(status=status, headers={}, body=body)
        return HttpAnswer(status=404, headers={}, body=b'{"detail":"Not Found"}')


def resolver(backend: Backend, **kw: Any) -> MediaResolver:
    return MediaResolver(backend, poll_interval=0.01, **kw)  # type: ignore[arg-type]


def fixture(name: str) -> Any:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"fixture {name} not present")
    return json.loads(path.read_text())


def test_file_service_and_sediment_pointers_use_their_endpoints() -> None:
    fulfilled = fixture("heygen_files_download_fulfilled_2026-04.json")
    backend = Backend({"/files/": [(200, fulfilled)], "/conversation/": [(200, fulfilled)]})
    media = resolver(backend)
    a = tr.Image(pointer="file-service://file-abc", message_id="m", conversation_id=CID)
    b = tr.Image(pointer="sediment://file_0001", message_id="m", conversation_id=CID)
    assert (
        asyncio.run(media.image_markdown(ctx(), a))
        == f"\n\n![image]({fulfilled['download_url']})\n\n"
    )
    asyncio.run(media.image_markdown(ctx(), b))
    assert backend.calls == [
        "/files/file-abc/download",
        f"/conversation/{CID}/attachment/file_0001/download",
    ]


def test_a_lookup_without_a_url_yet_is_asked_again() -> None:
    backend = Backend({"/files/": [(200, {"status": "pending"}), (200, {"download_url": "u"})]})
    piece = tr.Image(pointer="file-service://f", message_id=None, conversation_id=None)
    assert asyncio.run(resolver(backend).image_url(ctx(), piece)) == "u"
    assert len(backend.calls) == 2


@pytest.mark.parametrize(
    ("pointer", "text"),
    [("sediment://f", "cannot be located"), ("file-service://f", "could not be downloaded")],
)
def test_unresolvable_images_say_so(pointer: str, text: str) -> None:
    piece = tr.Image(pointer=pointer, message_id=None, conversation_id=None)
    out = asyncio.run(resolver(Backend({})).image_markdown(ctx(), piece))
    assert text in out


def test_sandbox_link_is_replaced_by_its_download_url() -> None:
    backend = Backend({"/conversation/": [(200, {"download_url": "https://d/x (1).csv"})]})
    piece = tr.SandboxLink(path="/mnt/data/x.csv", message_id="m1", conversation_id=CID)
    assert (
        asyncio.run(resolver(backend).sandbox_markdown(ctx(), piece)) == "https://d/x%20%281%29.csv"
    )
    assert backend.calls == [
        f"/conversation/{CID}/interpreter/download?message_id=m1&sandbox_path=/mnt/data/x.csv"
    ]
    # Without history the sandbox is gone: the link keeps its sandbox: target.
    gone = resolver(Backend({}))
    assert asyncio.run(gone.sandbox_markdown(ctx(), piece)) == "sandbox:/mnt/data/x.csv"


# -- asynchronous images -------------------------------------------------------------


def image_message(mid: str, pointers: list[str], status: str = "finished_successfully") -> Any:
    return {
        "id": mid,
        "author": {"role": "tool", "name": "t2uay3k.sj1i4kz"},
        "content": {
            "content_type": "multimodal_text",
            "parts": [
                {"content_type": "image_asset_pointer", "asset_pointer": p} for p in pointers
            ],
        },
        "status": status,
    }


def conversation(*messages: Any, async_status: int | None = None) -> dict[str, Any]:
    chain = [
        {
            "id": "u",
            "author": {"role": "user"},
            "content": {"content_type": "text", "parts": ["hi"]},
        },
        *messages,
    ]
    mapping: dict[str, Any] = {"root": {"id": "root", "message": None, "parent": None}}
    parent = "root"
    for m in chain:
        mapping[m["id"]] = {"id": m["id"], "message": m, "parent": parent}
        parent = m["id"]
    return {"mapping": mapping, "current_node": parent, "async_status": async_status}


def test_async_images_reads_the_last_turn_in_order() -> None:
    old = image_message("old", ["sediment://file_old"])
    conv = conversation(
        image_message("a", ["sediment://file_1", "file-service://file-2"]),
        image_message("b", ["sediment://file_3"], status="in_progress"),
    )
    # An earlier turn's image (before the last user message) is not this turn's.
    conv["mapping"]["u"]["parent"] = "old"
    conv["mapping"]["old"] = {"id": "old", "message": old, "parent": "root"}
    assert async_images(conv) == ["sediment://file_1", "file-service://file-2"]


def run_follow(media: MediaResolver, deadline: float = 30.0) -> list[Any]:
    pending = tr.Pending(kind="async", conversation_id=CID)

    async def go() -> list[Any]:
        return [
            p
            async for p in media.follow_async(ctx(), pending, deadline=time.monotonic() + deadline)
        ]

    return asyncio.run(go())


def test_follow_async_polls_until_the_images_are_there() -> None:
    backend = Backend(
        {
            "/conversation/": [
                (200, conversation(async_status=7)),
                (200, conversation(async_status=7)),
                (200, conversation(image_message("a", ["sediment://f1", "sediment://f2"]))),
            ]
        }
    )
    pieces = run_follow(resolver(backend))
    assert isinstance(pieces[0], tr.Progress)
    assert [p.pointer for p in pieces if isinstance(p, tr.Image)] == [
        "sediment://f1",
        "sediment://f2",
    ]
    assert pieces[-1] == tr.Finish(reason="stop")
    assert len(backend.calls) == 3


def test_follow_async_without_history_explains() -> None:
    pieces = run_follow(resolver(Backend({"/conversation/": [(404, {"detail": "Can't load"})]})))
    text = "".join(p.text for p in pieces if isinstance(p, tr.Text))
    assert "history" in text and pieces[-1] == tr.Finish(reason="stop")


def test_follow_async_is_bounded_in_time() -> None:
    backend = Backend({"/conversation/": [(200, conversation(async_status=7))]})
    media = resolver(backend, async_timeout=0.1, progress_every=0.02)
    pieces = run_follow(media)
    text = "".join(p.text for p in pieces if isinstance(p, tr.Text))
    assert "still being generated" in text and CID in text
    assert sum(isinstance(p, tr.Progress) for p in pieces) >= 2
    assert pieces[-1] == tr.Finish(reason="stop")
