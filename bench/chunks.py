"""Throughput of the OpenAI chunk encoder on real answer pieces.

    python bench/chunks.py [--seconds N] [--rounds N]

The pieces are the answer text and reasoning that the stream translator gets out
of the real captures (word-sized deltas, CJK, markdown, a few long ones), plus a
few that need escaping (quotes, newlines, a lone surrogate). Prints chunks per
second of ``ChunkEncoder.content``/``reasoning`` next to a baseline measured in
the same run, a naive encoder that builds the whole chunk object and
``json.dumps`` it per piece, and the ratio; the median over ``--rounds``
measurements (other work on the machine only slows a round down). Before timing,
it checks that both produce the same bytes.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import FIXTURES, per_second  # noqa: E402
from translator.answer import Reasoning, Text  # noqa: E402
from translator.chunks import ChunkEncoder  # noqa: E402
from translator.stream import Translation  # noqa: E402

# A typical stream's fixed fields: every chunk repeats them.
STREAM: dict[str, Any] = {
    "completion_id": "chatcmpl-" + "x" * 29,
    "created": 1_700_000_000,
    "model": "gpt-4o",
    "include_usage": True,
    "system_fingerprint": "fp_0123456789",
}
EXTRA = [
    (True, 'He said "hi"\\n'),
    (True, "line\nbreak\ttab"),
    (True, "lone \ud83d surrogate"),
    (False, "**Thinking**\n\n"),
]

_SURROGATE = re.compile("[\ud800-\udfff]")


def load() -> list[tuple[bool, str]]:
    """``(is_content, text)`` for every visible piece of the captures."""
    out: list[tuple[bool, str]] = []
    for path in sorted(FIXTURES.glob("*/*.sse")):
        t = Translation()
        for p in t.feed(path.read_bytes()) + t.finish():
            if isinstance(p, (Text, Reasoning)):
                out.append((isinstance(p, Text), p.text))
    return out + EXTRA


class NaiveEncoder:
    """The baseline: the whole chunk object through ``json.dumps`` per piece."""

    def __init__(self) -> None:
        self.head: dict[str, Any] = {
            "id": STREAM["completion_id"],
            "object": "chat.completion.chunk",
            "created": STREAM["created"],
            "model": STREAM["model"],
            "system_fingerprint": STREAM["system_fingerprint"],
        }

    def piece(self, key: str, text: str) -> bytes:
        obj = dict(self.head)
        obj["choices"] = [
            {"index": 0, "delta": {key: text}, "logprobs": None, "finish_reason": None}
        ]
        obj["usage"] = None
        body = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        if _SURROGATE.search(body):
            body = json.dumps(obj, separators=(",", ":"))
        return ("data: " + body + "\n\n").encode()


def encoder() -> ChunkEncoder:
    enc = ChunkEncoder(**STREAM)
    enc.start()
    return enc


def check(pieces: list[tuple[bool, str]]) -> None:
    enc, naive = encoder(), NaiveEncoder()
    for is_content, text in pieces:
        got = enc.content(text) if is_content else enc.reasoning(text)
        want = naive.piece("content" if is_content else "reasoning_content", text)
        if got != want:
            raise SystemExit(
                f"ChunkEncoder and the baseline differ for {text!r}:\n{got!r}\n{want!r}"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    ap.add_argument("--rounds", type=int, default=5, help="measurements, the median is shown")
    args = ap.parse_args()
    pieces = load()
    check(pieces)
    contents = [t for c, t in pieces if c]
    reasonings = [t for c, t in pieces if not c]

    def encode() -> None:
        enc = encoder()
        content, reasoning = enc.content, enc.reasoning
        for text in contents:
            content(text)
        for text in reasonings:
            reasoning(text)

    def baseline() -> None:
        piece = NaiveEncoder().piece
        for text in contents:
            piece("content", text)
        for text in reasonings:
            piece("reasoning_content", text)

    n = len(pieces)
    mean = sum(len(t) for _, t in pieces) / n
    print(f"pieces: {n} ({len(reasonings)} reasoning), {mean:.1f} characters on average")
    bases: list[float] = []
    rates: list[float] = []
    for _ in range(args.rounds):
        bases.append(per_second(baseline, n, args.seconds / 2))
        rates.append(per_second(encode, n, args.seconds / 2))
    base, rate = statistics.median(bases), statistics.median(rates)
    ratios = statistics.median(r / b for r, b in zip(rates, bases, strict=True))
    print(f"baseline json.dumps of each chunk : {base:12,.0f} chunks/s")
    print(f"ChunkEncoder.content/reasoning    : {rate:12,.0f} chunks/s  ({ratios:.2f}x baseline)")
    print(f"medians of {args.rounds} rounds of {args.seconds:g} s")


if __name__ == "__main__":
    main()
