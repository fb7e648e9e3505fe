"""Token counting: vendored encodings, offline, and OpenAI's chat formula."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import tiktoken_ext.openai_public as openai_public

from translator import usage
from translator.backend_body import Attachment
from translator.request import parse_chat_request
from translator.usage import (
    CL100K_BASE,
    O200K_BASE,
    SPECS,
    EncodingSpec,
    count_prompt_tokens,
    count_text_tokens,
    encoding_for,
    encoding_name_for,
    image_tokens,
)


@pytest.mark.parametrize("spec", [CL100K_BASE, O200K_BASE], ids=lambda s: s.name)
def test_vendored_file_matches_tiktoken_pinned_hash(spec: EncodingSpec) -> None:
    data = gzip.decompress(spec.path.read_bytes())
    assert hashlib.sha256(data).hexdigest() == spec.sha256


@pytest.mark.parametrize("spec", [CL100K_BASE, O200K_BASE], ids=lambda s: s.name)
def test_spec_matches_installed_tiktoken(
    spec: EncodingSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pat_str, special tokens and the hash are the installed tiktoken's, read without loading."""
    seen: dict[str, Any] = {}

    def fake_load(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        seen["url"], seen["hash"] = url, expected_hash
        return {}

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", fake_load)
    constructor = openai_public.ENCODING_CONSTRUCTORS[spec.name]
    params = constructor()
    assert params["pat_str"] == spec.pat_str
    assert params["special_tokens"] == dict(spec.special_tokens)
    assert seen["hash"] == spec.sha256
    assert seen["url"].endswith(f"/{spec.name}.tiktoken")


def test_corrupt_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(gzip.compress(b"IQ== 0\n"))
    monkeypatch.setattr(usage, "ENCODINGS_DIR", tmp_path)
    with pytest.raises(usage.EncodingDataError, match="does not match"):
        usage.read_ranks(CL100K_BASE)


def test_no_network_and_no_tiktoken_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path))

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(usage, "_cache", {})  # force a fresh build under the block
    assert count_text_tokens("hello world", "gpt-4o") == 2
    assert count_text_tokens("hello world", "gpt-4") == 2
    assert list(tmp_path.iterdir()) == []


def test_encodings_are_built_once() -> None:
    assert encoding_for("gpt-4o") is encoding_for("o3-mini")
    assert encoding_for("gpt-4") is encoding_for("gpt-3.5-turbo")
    assert encoding_for("gpt-4o") is not encoding_for("gpt-4")
    assert set(SPECS) == {"cl100k_base", "o200k_base"}
    with pytest.raises(KeyError):
        usage.get_encoding("p50k_base")


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1", "o200k_base"),
        ("gpt-4.1-mini", "o200k_base"),
        ("gpt-4.5-preview", "o200k_base"),
        ("gpt-4-1", "o200k_base"),  # ChatGPT slugs
        ("gpt-4-5", "o200k_base"),
        ("o1", "o200k_base"),
        ("o3-mini-high", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5-2-thinking", "o200k_base"),
        ("something-new", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-4-1106-preview", "cl100k_base"),
        ("gpt-4-turbo-2024-04-09", "cl100k_base"),
        ("gpt-4-32k", "cl100k_base"),
        ("gpt-4-gizmo-g-abc", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("text-davinci-002-render-sha", "cl100k_base"),
        ("ft:gpt-4-0613:org::id", "cl100k_base"),
        ("ft:gpt-4o-2024-08-06:org::id", "o200k_base"),
    ],
)
def test_encoding_name_for(model: str, encoding: str) -> None:
    assert encoding_name_for(model) == encoding


@pytest.mark.parametrize(
    ("text", "model", "count"),
    [
        ("hello world", "gpt-4o", 2),
        ("hello world", "gpt-4", 2),
        ("", "gpt-4o", 0),
        ("tiktoken is great!", "gpt-4", 6),
        ("<|endoftext|>", "gpt-4o", 7),  # special-token text counts as ordinary text
        ("<|endoftext|>", "gpt-4", 7),
    ],
)
def test_count_text_tokens(text: str, model: str, count: int) -> None:
    assert count_text_tokens(text, model) == count


def test_known_token_ids() -> None:
    assert encoding_for("gpt-4").encode("hello world") == [15339, 1917]
    assert encoding_for("gpt-4o").encode("hello world") == [24912, 2375]
    assert encoding_for("gpt-4o").decode([24912, 2375]) == "hello world"


# The OpenAI cookbook's example conversation ("How to count tokens with tiktoken"), whose
# published counts are 129 prompt tokens for gpt-4-0613 and 124 for gpt-4o.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]


def parse(messages: list[dict[str, Any]], model: str = "gpt-4o") -> Any:
    raw = json.dumps({"model": model, "messages": messages}).encode()
    return parse_chat_request(raw, max_body_bytes=1 << 20).messages


@pytest.mark.parametrize(("model", "count"), [("gpt-4-0613", 129), ("gpt-4o", 124)])
def test_cookbook_prompt_counts(model: str, count: int) -> None:
    assert count_prompt_tokens(parse(COOKBOOK_MESSAGES), model) == count


def test_prompt_formula_parts() -> None:
    one = parse([{"role": "user", "content": "hello world"}])
    # 3 (message) + 1 ("user") + 2 ("hello world") + 3 (reply primer)
    assert count_prompt_tokens(one, "gpt-4o") == 9
    # list content: only text counts; two text parts count separately
    listed = parse(
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": " world"}],
            }
        ]
    )
    assert count_prompt_tokens(listed, "gpt-4o") == 9


@pytest.mark.parametrize(
    ("size", "detail", "tokens"),
    [
        (None, None, 85),  # unknown size
        ((1024, 1024), "low", 85),
        ((1024, 1024), "high", 765),  # -> 768x768, 4 tiles
        ((2048, 4096), None, 1105),  # -> 1024x2048 -> 768x1536, 2x3 tiles
        ((128, 128), "auto", 255),  # never scaled up: 1 tile
        ((512, 512), None, 255),
        ((513, 512), None, 425),
    ],
)
def test_image_tokens(size: tuple[int, int] | None, detail: str | None, tokens: int) -> None:
    width, height = size if size else (None, None)
    assert image_tokens(width, height, detail) == tokens


def test_prompt_counts_images_and_files() -> None:
    messages = parse(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hello world"},
                    {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
                    {"type": "image_url", "image_url": {"url": "https://x/b.png"}},
                    {"type": "file", "file": {"file_data": "data:a;base64,AA", "filename": "a"}},
                ],
            }
        ]
    )
    base = 9
    # no attachments: unknown image sizes count 85 each, an unuploaded file nothing
    assert count_prompt_tokens(messages, "gpt-4o") == base + 85 + 85
    attachments = {
        (0, 1): Attachment(
            file_id="file-1",
            size=5000,
            name="a.png",
            mime_type="image/png",
            width=1024,
            height=1024,
            is_image=True,
        ),
        (0, 3): Attachment(file_id="file-2", size=12_345, name="a", mime_type="text/plain"),
    }
    assert (
        count_prompt_tokens(messages, "gpt-4o", attachments_by_part=attachments)
        == base + 765 + 85 + 12
    )


def test_prompt_counts_tool_fields() -> None:
    messages = parse(
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ]
    )
    enc = encoding_for("gpt-4o")
    expected = 3 + (3 + len(enc.encode("assistant")) + 1 + len(enc.encode("{}")))
    expected += 3 + len(enc.encode("tool")) + len(enc.encode("c1")) + len(enc.encode("ok"))
    assert count_prompt_tokens(messages, "gpt-4o") == expected


# -- the rank files, parsed as tiktoken reads them ---------------------------


@pytest.mark.parametrize("spec", [usage.CL100K_BASE, usage.O200K_BASE], ids=lambda s: s.name)
def test_ranks_parse_as_tiktoken_reads_them(spec: usage.EncodingSpec) -> None:
    data = gzip.decompress(spec.path.read_bytes())
    # tiktoken.load.load_tiktoken_bpe, without its download.
    expected = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.splitlines() if line)
    }
    assert usage.parse_ranks(data) == expected


def test_ranks_parse_skips_blank_lines() -> None:
    assert usage.parse_ranks(b"IQ== 0\n\nIg== 1\n") == {b"!": 0, b'"': 1}
