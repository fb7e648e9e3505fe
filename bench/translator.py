"""Throughput of the stream translator over the real captures.

    python bench/translator.py [--seconds N]

Prints events per second through the whole ``Translation`` (bytes in, pieces
out) next to a baseline, bare ``json.loads`` of the same data lines, and the
ratio. Target: at least 50,000 events/s on one core.

Then two more translations, each with a target of 100,000 events/s on one core:
the tool-call parser (``translator/toolcalls/parser.py``) over answer text deltas
with prose and calls, an event being one delta; and the Codex backend's events
to chat chunks (``translator/codex_chat.py`` with the chunk encoder) over the
Codex captures, an event being one decoded backend event.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# This file is itself named translator.py: put the repository root first, not bench/.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.common import FIXTURES, per_second  # noqa: E402
from translator import chunks as oa  # noqa: E402
from translator.codex_chat import CallArgs, CallStart, ChatEvents, End  # noqa: E402
from translator.options import ToolSpec  # noqa: E402
from translator.responses.events import Decoder, Event, event_of  # noqa: E402
from translator.sse import EventStream  # noqa: E402
from translator.stream import Translation  # noqa: E402
from translator.toolcalls.parser import CallParser  # noqa: E402

CODEX_FIXTURES = FIXTURES.parent / "codex"
_TOOL = ToolSpec(
    name="get_weather",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
)


def tool_answer_deltas() -> list[str]:
    """Word-sized deltas of answers with prose, code, a fenced call and plain calls."""
    prose = "The weather depends on the city, so let me look it up for you now. " * 8
    code = "```python\nprint('not a call') < 3\n```\n"
    call = '<chat2api:call name="get_weather">\n{"city": "Paris", "days": 3}\n</chat2api:call>\n'
    text = (prose + code + "```xml\n" + call + "```\n" + prose + call + call) * 4
    return re.findall(r"\s*\S+", text)


def codex_events() -> list[Event]:
    events: list[Event] = []
    for path in sorted(CODEX_FIXTURES.glob("*")):
        raw = path.read_bytes()
        if path.name.endswith(".sse"):
            decoder = Decoder()
            events += decoder.feed(raw) + decoder.finish()
        elif path.name.endswith(".chunks.jsonl"):
            events += [event_of(json.loads(line)) for line in raw.splitlines() if line.strip()]
    return events


def agent_benchmarks(seconds: float) -> list[float]:
    deltas = tool_answer_deltas()

    def parse_tools() -> None:
        parser = CallParser({_TOOL.name: _TOOL})
        for delta in deltas:
            parser.feed(delta)
        parser.finish()

    events = codex_events()

    def codex_chat() -> None:
        chat = ChatEvents()
        encoder = oa.ChunkEncoder("chatcmpl-bench", 0, "gpt-5.5", include_usage=True)
        for event in events:
            for out in chat.feed(event):
                if isinstance(out, str):
                    encoder.content(out)
                elif isinstance(out, tuple):
                    encoder.reasoning(out[1])
                elif isinstance(out, CallStart):
                    encoder.call_start(out.index, out.call_id, out.name)
                elif isinstance(out, CallArgs):
                    encoder.call_args(out.index, out.delta)
                elif isinstance(out, End):
                    chat = ChatEvents()  # the captures hold several responses
                    encoder = oa.ChunkEncoder("chatcmpl-bench", 0, "gpt-5.5", include_usage=True)

    tools = per_second(parse_tools, len(deltas), seconds)
    codex = per_second(codex_chat, len(events), seconds) if events else 0.0
    print(f"tool-call parser, {len(deltas)} deltas      : {tools:12,.0f} events/s")
    print(f"Codex events -> chat chunks, {len(events)} ev : {codex:12,.0f} events/s")
    ok = min(tools, codex) >= 100_000
    print(f"target >= 100,000 events/s each     : {'OK' if ok else 'MISSED'}")
    return [tools, codex]


def load() -> list[tuple[str, bytes, list[str]]]:
    out = []
    for path in sorted(FIXTURES.glob("*/*.sse")):
        raw = path.read_bytes()
        es = EventStream()
        datas = [e.data for e in es.feed(raw) + es.flush()]
        out.append((f"{path.parent.name}/{path.name}", raw, datas))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = ap.parse_args()
    captures = load()

    def translate_all() -> None:
        for _, raw, _ in captures:
            t = Translation()
            t.feed(raw)
            t.finish()

    def translate_chunked() -> None:  # 1 KiB reads, like a socket
        for _, raw, _ in captures:
            t = Translation()
            for i in range(0, len(raw), 1024):
                t.feed(raw[i : i + 1024])
            t.finish()

    def baseline() -> None:
        for _, _, datas in captures:
            for d in datas:
                if d and d != "[DONE]":
                    json.loads(d)

    n = sum(len(d) for _, _, d in captures)
    size = sum(len(r) for _, r, _ in captures)
    print(f"captures: {len(captures)}, {n} SSE events, {size / 1e6:.2f} MB")
    base = per_second(baseline, n, args.seconds)
    whole = per_second(translate_all, n, args.seconds)
    chunked = per_second(translate_chunked, n, args.seconds)
    print(f"baseline json.loads of data lines : {base:12,.0f} events/s")
    print(
        f"Translation, whole capture        : {whole:12,.0f} events/s"
        f"  ({whole / base:.2f}x baseline)"
    )
    print(
        f"Translation, 1 KiB chunks         : {chunked:12,.0f} events/s"
        f"  ({chunked / base:.2f}x baseline)"
    )
    print(
        f"target >= 50,000 events/s         : {'OK' if min(whole, chunked) >= 50_000 else 'MISSED'}"
    )
    print("per capture (whole):")
    for name, raw, datas in captures:

        def one(raw: bytes = raw) -> None:
            t = Translation()
            t.feed(raw)
            t.finish()

        rate = per_second(one, len(datas), args.seconds / 4)
        print(f"  {name:75s} {len(datas):5d} ev {rate:12,.0f} ev/s")
    agent_benchmarks(args.seconds)


if __name__ == "__main__":
    main()
