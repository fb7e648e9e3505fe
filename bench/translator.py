"""Throughput of the stream translator over the real captures.

    python bench/translator.py [--seconds N]

Prints events per second through the whole ``Translation`` (bytes in, pieces
out) next to a baseline, bare ``json.loads`` of the same data lines, and the
ratio. Target: at least 50,000 events/s on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# This file is itself named translator.py: put the repository root first, not bench/.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.common import FIXTURES, per_second  # noqa: E402
from translator.sse import EventStream  # noqa: E402
from translator.stream import Translation  # noqa: E402


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


if __name__ == "__main__":
    main()
