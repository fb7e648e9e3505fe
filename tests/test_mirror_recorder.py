"""gateway/recorder.py: the conversation id of a stream, on every split."""

from __future__ import annotations

import random

from mirror.recorder import ConversationIdScanner

CID = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
V1 = (
    b'event: delta_encoding\ndata: "v1"\n\n'
    b'data: {"type": "resume_conversation_token", "token": "x", "conversation_id": "'
    + CID.encode()
    + b'"}\n\ndata: {"p": "", "o": "add", "v": {"message": {}, "conversation_id": "other"}}\n\n'
)
LEGACY = (
    b'data: {"message": {"id": "m"}, "conversation_id": "' + CID.encode() + b'", "error": null}\n\n'
)


def scan(chunks: list[bytes]) -> list[str]:
    scanner = ConversationIdScanner()
    return [cid for chunk in chunks if (cid := scanner.feed(chunk))]


def test_every_split_point() -> None:
    for stream in (V1, LEGACY):
        for i in range(len(stream) + 1):
            assert scan([stream[:i], stream[i:]]) == [CID]
        assert scan([stream[i : i + 1] for i in range(len(stream))]) == [CID]


def test_random_splits_and_first_id_only() -> None:
    rng = random.Random(5)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(V1)), 4))
        parts = [V1[a:b] for a, b in zip([0, *cuts], [*cuts, len(V1)], strict=True)]
        assert scan(parts) == [CID]


def test_no_id() -> None:
    assert scan([b'data: {"conversation_id": null}\n\n', b"data: [DONE]\n\n"]) == []
