"""``/v1/responses`` on the Codex backend under load: chat2api against the bare backend call.

    python bench/responses.py [--quick] [--runner run.sh|mitmdump]

Starts the backend emulator (its Codex backend, generated answers) and chat2api
the way ``run.sh`` does, and drives load with bench/proxy.py's keep-alive client.

Rows:

``direct``
    The baseline: ``POST /backend-api/codex/responses`` straight to the emulator
    with the headers and body chat2api sent for the same request (captured from
    the emulator's request log), read to the end of the stream.
``reverse`` / ``proxy``
    ``POST /v1/responses`` (``stream: true``) on chat2api's reverse listener, and
    through its HTTPS-proxy listener (CONNECT + TLS), as the SDKs send it.
``web``
    ``POST /v1/chat/completions`` streamed through the reverse listener on the web
    conversation, at c=50: the CPU a streamed request costs on the web path, which
    the Codex path should not exceed.

Reported: the time to the first ``response.output_text.delta`` at c=1 (p50/p90)
and what chat2api adds to it over the direct call; c=50 requests/s and proxy CPU
per request (``/proc/<pid>/stat``), with ratios to the direct rows of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import ssl
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.proxy import (  # noqa: E402
    Conn,
    Result,
    Row,
    Runner,
    drive,
    fmt,
    openai_runner,
    proc_cpu,
    start_proxy,
    tunnel_context,
)
from tests.fakechatgpt.harness import (  # noqa: E402
    mint_access_token,
    received,
    reset,
    run_emulator,
)

MODEL = "gpt-5.5"
PROMPT = "Say hello"
TEXT_DELTA = b'"response.output_text.delta"'
COMPLETED = b'"response.completed"'
# The targets.
TARGET_ADDED_MS = 2.0

_SKIP = {"content-length", "host", "accept-encoding", "connection", "transfer-encoding"}


async def request_marked(
    conn: Conn, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, bytes, float, float]:
    """(status, body, time of the first text delta, end) for one streamed POST."""
    if conn.writer is None:
        await conn.open()
    assert conn.reader is not None and conn.writer is not None
    host = "api.openai.com" if conn.tunnel else conn.host
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    conn.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    reader = conn.reader
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    chunked = b"chunked" in head.lower()
    parts: list[bytes] = []
    marked = 0.0
    while True:
        if chunked:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            piece = (await reader.readexactly(size + 2))[:-2]
        else:  # the emulator: no length, the stream ends with the connection
            piece = await reader.read(65536)
            if not piece:
                conn.close()
                break
        parts.append(piece)
        if not marked and TEXT_DELTA in piece:
            marked = time.perf_counter()
    end = time.perf_counter()
    if b"connection: close" in head.lower():
        conn.close()
    return status, b"".join(parts), marked or end, end


def responses_runner(path: str, headers: dict[str, str], body: bytes) -> Runner:
    async def run(conn: Conn) -> Result:
        t0 = time.perf_counter()
        status, data, first, end = await request_marked(conn, path, headers, body)
        events = data.count(b"\ndata: ") + data.startswith(b"data: ")
        if status != 200 or COMPLETED not in data[-4096:]:
            return Result(False, first - t0, end - t0, events, f"HTTP {status}: {data[-160:]!r}")
        return Result(True, first - t0, end - t0, events)

    return run


def capture_codex_call(emu_url: str) -> tuple[dict[str, str], bytes]:
    call = next(c for c in received(emu_url) if c["path"] == "/backend-api/codex/responses")
    headers = {k: v for k, v in call["headers"].items() if k.lower() not in _SKIP}
    return headers, call["body"].encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer requests per row")
    ap.add_argument("--runner", choices=("run.sh", "mitmdump"), default="run.sh")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    scale = 0.3 if args.quick else 1.0
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    )
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    token = mint_access_token(exp_in=24 * 3600)
    api_body = json.dumps({"model": MODEL, "input": PROMPT, "stream": True, "store": False})
    api_headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    rows: list[Row] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-responses-")))
        emu = stack.enter_context(run_emulator())
        mitm = stack.enter_context(start_proxy(tmp / "proxy", emu.url, args.runner))
        ours = responses_runner("/v1/responses", api_headers, api_body.encode())

        async def once() -> Result:
            conn = Conn("127.0.0.1", mitm.reverse_port, None)
            try:
                return await ours(conn)
            finally:
                conn.close()

        reset(emu.url)
        first = asyncio.run(once())
        if not first.ok:
            sys.exit(f"chat2api does not answer: {first.error}\n{mitm.log()[-3000:]}")
        direct = responses_runner("/backend-api/codex/responses", *capture_codex_call(emu.url))
        web = openai_runner(token, True, PROMPT)
        plan: list[tuple[str, int, int, Runner]] = []
        for c, n in ((1, 80), (50, 600)):
            for mode in ("direct", "reverse", "proxy"):
                plan.append((mode, c, max(c, int(n * scale)), direct if mode == "direct" else ours))
        plan.append(("web", 50, max(50, int(600 * scale)), web))
        for mode, c, n, runner in plan:
            ctx: ssl.SSLContext | None = tunnel_context(mitm) if mode == "proxy" else None
            port = {"direct": emu.port, "proxy": mitm.proxy_port}.get(mode, mitm.reverse_port)

            def make(p: int = port, x: ssl.SSLContext | None = ctx) -> Conn:
                return Conn("127.0.0.1", p, x)

            reset(emu.url)
            cpu0 = proc_cpu(mitm.proc.pid)
            results, wall = asyncio.run(drive(make, runner, c, n, 30.0))
            row = Row("codex", mode, True, c, results, wall)
            if mode != "direct":
                row.proxy_cpu = proc_cpu(mitm.proc.pid) - cpu0
            rows.append(row)
            shown = next((r.error for r in results if not r.ok), "")
            print(
                f"  ran {mode:7s} c={c:<3d} {len(results):4d} req in {wall:5.2f} s"
                + (f"  first error: {shown[:150]}" if shown else ""),
                flush=True,
            )
    report(rows)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps([summary(r) for r in rows], indent=1))


def summary(r: Row) -> dict[str, Any]:
    return {
        "mode": r.mode,
        "c": r.concurrency,
        "n": len(r.results),
        "errors": r.errors,
        "first_text_p50": r.pct("ttfb", 0.5),
        "total_p50": r.pct("total", 0.5),
        "rps": r.rps,
        "proxy_cpu_ms_per_req": r.proxy_cpu / max(1, len(r.ok)) * 1000,
    }


def report(rows: list[Row]) -> None:
    print()
    print("mode    c    n     err  first text p50  p90   total p50  p90    req/s  proxy CPU ms/req")
    for r in rows:
        per_req = r.proxy_cpu / max(1, len(r.ok)) * 1000 if r.mode != "direct" else float("nan")
        print(
            f"{r.mode:7s} {r.concurrency:<3d} {len(r.results):4d} {r.errors:4d} "
            f"{fmt(r.pct('ttfb', 0.5), 10)} {fmt(r.pct('ttfb', 0.9))} "
            f"{fmt(r.pct('total', 0.5), 9)} {fmt(r.pct('total', 0.9))} "
            f"{fmt(r.rps, 8)} {fmt(per_req, 12, 2)}"
        )

    def find(mode: str, c: int) -> Row | None:
        return next((r for r in rows if r.mode == mode and r.concurrency == c), None)

    print()
    print("targets (issue 15); ratios against the direct Codex call of this run:")
    base = find("direct", 1)
    for mode in ("reverse", "proxy"):
        row = find(mode, 1)
        if base and row:
            added = row.pct("ttfb", 0.5) - base.pct("ttfb", 0.5)
            verdict = "met" if added <= TARGET_ADDED_MS else "MISSED"
            print(
                f"  c=1, {mode:7s}: first text delta +{added:5.2f} ms over direct "
                f"(target <= {TARGET_ADDED_MS:.0f}) {verdict}; "
                f"ratio {row.pct('ttfb', 0.5) / base.pct('ttfb', 0.5):.2f}x"
            )
    base50, web = find("direct", 50), find("web", 50)
    web_cpu = web.proxy_cpu / max(1, len(web.ok)) * 1000 if web else float("nan")
    for mode in ("reverse", "proxy"):
        row = find(mode, 50)
        if not row:
            continue
        per_req = row.proxy_cpu / max(1, len(row.ok)) * 1000
        ratio = f"{row.rps / base50.rps:.2f}x direct" if base50 and base50.rps else "no direct"
        verdict = "met" if per_req <= web_cpu else "MISSED"
        print(
            f"  c=50, {mode:7s}: {row.rps:6.1f} req/s ({ratio}); proxy CPU {per_req:.2f} ms/req "
            f"(web path {web_cpu:.2f} ms/req: target no higher) {verdict}"
        )


if __name__ == "__main__":
    main()
