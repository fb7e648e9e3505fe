"""The whole request path under load: mitmdump + chat2api against going straight to the emulator.

    python bench/proxy.py [--quick] [--runner run.sh|mitmdump] [--capture PATH]

Starts the backend emulator (``tests/fakechatgpt``) twice, once replaying a real
capture and once with its generated short answer, starts chat2api the way
``run.sh`` does (``python -m patches.launcher -s addons/chat2api.py ...``;
``--runner mitmdump``: plain ``mitmdump -s``), and drives
load from one asyncio process with a minimal HTTP/1.1 keep-alive client (one
connection per concurrent client, opened before timing starts; in the HTTPS-proxy
mode a ``CONNECT`` + TLS tunnel through the proxy, as the OpenAI SDK does).

Rows, each at concurrency 1, 50 and 200, streamed and not:

``direct``
    The baseline: the bare backend conversation with a valid sentinel flow, straight
    to the emulator, as chat2api itself must do it: ``POST
    /backend-api/sentinel/chat-requirements`` (with a requirements token, prepared
    once: the emulator does not check its freshness), solve the proof of work it
    asks for (``pow.solve``), ``POST /backend-api/conversation`` and read the
    event stream to its end. The headers and bodies are the ones chat2api sent
    for the same prompt (captured from the emulator's request log), so the
    emulator does the same work in both rows. Time starts before the sentinel call.
``reverse``
    ``POST /v1/chat/completions`` on chat2api's reverse listener (plain HTTP).
``proxy``
    The same through the HTTPS-proxy listener: ``CONNECT api.openai.com:443``, TLS
    (certificate from mitmproxy's CA), then the request.

Per row: p50/p90 time to the first body byte (``ttfb``; chat2api sends nothing
before the first answer piece has come from the backend, so its first byte is
content; the direct stream's first bytes are metadata events a few events ahead of
the content, which favours the baseline) and to the end (``total``), requests/s,
errors (a status other than 200, a stream without ``[DONE]``, a broken
connection), SSE events received, the proxy's CPU seconds (``/proc/<pid>/stat``,
all threads) per request and per 1,000 streamed events, and the proxy's peak
resident memory during the row (``VmHWM``, reset before each row through
``/proc/<pid>/clear_refs``). The emulator's CPU per request is shown too, as the
cost of the backend stand-in. Everything runs on 127.0.0.1; client, emulator and
proxy share the machine's cores, so the load average is printed as well.
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
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pow  # noqa: E402
from bench.common import FIXTURES  # noqa: E402
from tests.fakechatgpt.harness import (  # noqa: E402
    Emulator,
    mint_access_token,
    received,
    reset,
    run_emulator,
)
from tests.support.mitm import MITMDUMP, Mitm, start_mitm  # noqa: E402

CAPTURE = FIXTURES / "delta_v1" / "mldemo_gpt-4o_2024-10_empty-data-line.sse"
TICK = os.sysconf("SC_CLK_TCK")
MODEL = "gpt-4o"
PROMPT = "Say hello"
HOST = "api.openai.com"

# The figures for the original chat2api on this kind of machine.
ORIGINAL = {
    "ttfb_added_ms": 5.0,
    "total_added_ms": 8.0,
    "rps_c50_stream": 139.0,
    "rps_c50_whole": 152.0,
    "cpu_ms_per_req": 7.0,
}
ORIGINAL_MEMORY = (133.0, 144.0)
TARGETS = {
    "ttfb_added_ms": 4.0,
    "rps_c50_stream": 200.0,
    "cpu_ms_per_req": 3.5,
    "errors_c200": 0,
    "memory_mb": 120.0,
}


# --------------------------------------------------------------------------- client


class HttpError(Exception):
    pass


@dataclass
class Result:
    ok: bool
    ttfb: float
    total: float
    events: int
    error: str = ""


class Conn:
    """One HTTP/1.1 keep-alive connection: plain, or a CONNECT + TLS tunnel."""

    def __init__(self, host: str, port: int, tunnel: ssl.SSLContext | None) -> None:
        self.host, self.port, self.tunnel = host, port, tunnel
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.close()
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        if self.tunnel is not None:
            writer.write(f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise HttpError(f"CONNECT refused: {head[:60]!r}")
            await writer.start_tls(self.tunnel, server_hostname=HOST)
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, float, float]:
        """(status, body, first body byte time, end time), times from perf_counter."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST if self.tunnel else self.host}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        reader = self.reader
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        fields: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name:
                fields[name.strip().lower()] = value.strip()
        parts: list[bytes] = []
        first = 0.0
        if "chunked" in fields.get("transfer-encoding", ""):
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                parts.append((await reader.readexactly(size + 2))[:-2])
                if not first:
                    first = time.perf_counter()
        elif "content-length" in fields:
            data = await reader.readexactly(int(fields["content-length"]))
            first = time.perf_counter()
            parts.append(data)
        else:
            parts.append(await reader.read())
            first = time.perf_counter()
            self.close()
        end = time.perf_counter()
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status, b"".join(parts), first or end, end


def sse_events(body: bytes) -> int:
    return body.count(b"\ndata: ") + body.startswith(b"data: ")


def stream_done(body: bytes) -> bool:
    return body.rstrip().endswith(b"data: [DONE]")


Runner = Callable[[Conn], Awaitable[Result]]


def openai_runner(token: str, stream: bool, prompt: str) -> Runner:
    body = json.dumps(
        {"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": prompt}]}
    ).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def run(conn: Conn) -> Result:
        t0 = time.perf_counter()
        status, data, first, end = await conn.request("POST", "/v1/chat/completions", headers, body)
        if status != 200:
            return Result(False, first - t0, end - t0, 0, f"HTTP {status}: {data[:120]!r}")
        if stream:
            if not stream_done(data) or b'"error"' in data:
                return Result(
                    False, first - t0, end - t0, sse_events(data), f"bad stream {data[-200:]!r}"
                )
            return Result(True, first - t0, end - t0, sse_events(data))
        answer = json.loads(data)
        if not answer.get("choices"):
            return Result(False, first - t0, end - t0, 0, f"no choices: {data[:120]!r}")
        return Result(True, first - t0, end - t0, 0)

    return run


@dataclass
class Captured:
    """What chat2api sent the emulator for one turn: replayed by the direct client."""

    sentinel_headers: dict[str, str]
    sentinel_body: bytes
    conversation_headers: dict[str, str]
    conversation_body: bytes
    config: list[Any] = field(default_factory=list)


_SKIP = {"content-length", "host", "accept-encoding", "connection", "transfer-encoding"}


def capture_turn(emu: Emulator) -> Captured:
    calls = received(emu.url)
    sentinel = next(c for c in calls if c["path"].endswith("/sentinel/chat-requirements"))
    conv = next(c for c in calls if c["path"].endswith("/conversation"))
    p = json.loads(sentinel["body"])["p"]
    import base64

    config = json.loads(base64.b64decode(p[len(pow.REQUIREMENTS_PREFIX) :]))

    def clean(h: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in h.items() if k.lower() not in _SKIP}

    conv_headers = clean(conv["headers"])
    for k in list(conv_headers):
        if k.lower().startswith("openai-sentinel"):
            del conv_headers[k]
    return Captured(
        sentinel_headers=clean(sentinel["headers"]),
        sentinel_body=sentinel["body"].encode(),
        conversation_headers=conv_headers,
        conversation_body=conv["body"].encode(),
        config=config,
    )


def direct_runner(cap: Captured, stream: bool) -> Runner:
    async def run(conn: Conn) -> Result:
        t0 = time.perf_counter()
        status, data, _, end = await conn.request(
            "POST",
            "/backend-api/sentinel/chat-requirements",
            cap.sentinel_headers,
            cap.sentinel_body,
        )
        if status != 200:
            return Result(False, end - t0, end - t0, 0, f"sentinel HTTP {status}")
        req = json.loads(data)
        challenge = req["proofofwork"]
        answer = pow.solve(cap.config, challenge["seed"], challenge["difficulty"])
        headers = dict(cap.conversation_headers)
        headers["openai-sentinel-chat-requirements-token"] = req["token"]
        headers["openai-sentinel-proof-token"] = pow.as_proof_token(answer)
        status, data, first, end = await conn.request(
            "POST", "/backend-api/conversation", headers, cap.conversation_body
        )
        if status != 200 or not stream_done(data):
            return Result(False, first - t0, end - t0, 0, f"conversation HTTP {status}")
        # Non-streamed: the whole stream is what a client waits for (no TTFB).
        return Result(True, (first if stream else end) - t0, end - t0, sse_events(data))

    return run


# --------------------------------------------------------------------------- load


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_mem_mb(pid: int, key: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(int(line.split()[1]) / 1024)
    return float("nan")


def reset_peak(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


@dataclass
class Row:
    target: str
    mode: str
    stream: bool
    concurrency: int
    results: list[Result]
    wall: float
    proxy_cpu: float = 0.0
    emu_cpu: float = 0.0
    peak_mb: float = 0.0

    @property
    def ok(self) -> list[Result]:
        return [r for r in self.results if r.ok]

    @property
    def errors(self) -> int:
        return len(self.results) - len(self.ok)

    def pct(self, attr: str, q: float) -> float:
        values: list[float] = sorted(getattr(r, attr) for r in self.ok)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    @property
    def rps(self) -> float:
        return len(self.ok) / self.wall if self.wall else 0.0

    @property
    def events(self) -> int:
        return sum(r.events for r in self.ok)


async def drive(
    make_conn: Callable[[], Conn], runner: Runner, concurrency: int, requests: int, seconds: float
) -> tuple[list[Result], float]:
    conns = [make_conn() for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in conns))
    # One untimed request per connection: TLS session, certificate, keep-alive set up.
    await asyncio.gather(*(runner(c) for c in conns))
    results: list[Result] = []
    remaining = requests
    started = time.perf_counter()
    deadline = started + seconds

    async def worker(conn: Conn) -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            try:
                results.append(await runner(conn))
            except Exception as e:  # noqa: BLE001 - a broken connection is an error row
                results.append(Result(False, 0, 0, 0, f"{type(e).__name__}: {e}"))
                conn.close()

    await asyncio.gather(*(worker(c) for c in conns))
    wall = time.perf_counter() - started
    for c in conns:
        c.close()
    return results, wall


# --------------------------------------------------------------------------- setup


@contextmanager
def start_proxy(tmp: Path, emu_url: str, runner: str) -> Iterator[Mitm]:
    env = {"CHATGPT_BASE_URL": emu_url}
    command: tuple[str, ...] = (str(MITMDUMP),)
    if runner == "run.sh":  # run.sh's launcher: mitmdump with a cheaper hook dispatch
        command = (sys.executable, "-m", "patches.launcher")
    with start_mitm(tmp, env, command=command) as mitm:
        yield mitm


def tunnel_context(mitm: Mitm) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(mitm.ca_path))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def fmt(v: float, width: int = 7, digits: int = 1) -> str:
    return f"{v:{width}.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer requests per row")
    ap.add_argument(
        "--runner",
        choices=("run.sh", "mitmdump"),
        default="run.sh",
        help="run.sh's launcher (python -m patches.launcher) or plain mitmdump -s",
    )
    ap.add_argument("--capture", type=Path, default=CAPTURE, help="capture for the c=1 rows")
    ap.add_argument("--modes", default="direct,reverse,proxy")
    ap.add_argument("--levels", default="1,50,200")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--kinds", default="stream,whole", help="streamed and/or whole answers")
    ap.add_argument("--requests", type=int, help="requests per row (default: 60 at c=1, 800 above)")
    args = ap.parse_args()
    scale = 0.3 if args.quick else 1.0
    modes = args.modes.split(",")
    levels = [int(x) for x in args.levels.split(",")]

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    )
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"runner: {args.runner}; capture for c=1: {args.capture.name}")
    token = mint_access_token(exp_in=24 * 3600)
    rows: list[Row] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-proxy-")))
        emu_real = stack.enter_context(run_emulator(replay=str(args.capture)))
        emu_short = stack.enter_context(run_emulator())
        proxies = {
            "real": stack.enter_context(start_proxy(tmp / "real", emu_real.url, args.runner)),
            "short": stack.enter_context(start_proxy(tmp / "short", emu_short.url, args.runner)),
        }
        emus = {"real": emu_real, "short": emu_short}
        # One turn through chat2api per emulator: the direct client replays what it sent.
        captured: dict[str, Captured] = {}
        for kind, emu in emus.items():
            reset(emu.url)
            mitm = proxies[kind]

            async def once(mitm: Mitm = mitm) -> Result:
                conn = Conn("127.0.0.1", mitm.reverse_port, None)
                try:
                    return await openai_runner(token, True, PROMPT)(conn)
                finally:
                    conn.close()

            first = asyncio.run(once())
            if not first.ok:
                sys.exit(f"chat2api does not answer: {first.error}\n{mitm.log()[-3000:]}")
            captured[kind] = capture_turn(emu)

        plan = []
        for c in levels:
            kind = "real" if c == 1 else "short"
            n = args.requests or {1: 60, 50: 800, 200: 800}.get(c, 20 * c)
            for stream in [k == "stream" for k in args.kinds.split(",")]:
                for mode in modes:
                    plan.append((kind, mode, stream, c, max(c, int(n * scale))))

        for kind, mode, stream, c, n in plan:
            emu, mitm = emus[kind], proxies[kind]
            if mode == "direct":
                runner = direct_runner(captured[kind], stream)
                address, ctx = emu.port, None
            else:
                runner = openai_runner(token, stream, PROMPT)
                ctx = tunnel_context(mitm) if mode == "proxy" else None
                address = mitm.proxy_port if mode == "proxy" else mitm.reverse_port

            def make(port: int = address, ctx: ssl.SSLContext | None = ctx) -> Conn:
                return Conn("127.0.0.1", port, ctx)

            reset(emu.url)  # the emulator's request log would grow without end
            pid = mitm.proc.pid
            reset_peak(pid)
            cpu0, ecpu0 = proc_cpu(pid), proc_cpu(emu.process.pid)
            results, wall = asyncio.run(drive(make, runner, c, n, 30.0))
            row = Row(kind, mode, stream, c, results, wall)
            if mode != "direct":
                row.proxy_cpu = proc_cpu(pid) - cpu0
                row.peak_mb = proc_mem_mb(pid)
            row.emu_cpu = proc_cpu(emu.process.pid) - ecpu0
            rows.append(row)
            shown = next((r.error for r in results if not r.ok), "")
            print(
                f"  ran {mode:7s} c={c:<3d} {'stream' if stream else 'whole '} "
                f"{len(results):4d} req in {wall:5.2f} s"
                + (f"  first error: {shown[:150]}" if shown else ""),
                flush=True,
            )
        rss_idle = {k: proc_mem_mb(m.proc.pid, "VmRSS") for k, m in proxies.items()}
    report(rows, rss_idle)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "mode": r.mode,
                        "stream": r.stream,
                        "c": r.concurrency,
                        "n": len(r.results),
                        "errors": r.errors,
                        "ttfb_p50": r.pct("ttfb", 0.5),
                        "total_p50": r.pct("total", 0.5),
                        "rps": r.rps,
                        "proxy_cpu": r.proxy_cpu,
                        "peak_mb": r.peak_mb,
                    }
                    for r in rows
                ],
                indent=1,
            )
        )


def report(rows: list[Row], rss_idle: dict[str, float]) -> None:
    print()
    print(
        "mode    c   kind   n     err  ttfb p50  p90   total p50  p90    req/s  "
        "proxy CPU ms/req  CPU s/1k ev  emu CPU ms/req  peak MB"
    )
    for r in rows:
        n_ok = max(1, len(r.ok))
        per_req = r.proxy_cpu / n_ok * 1000 if r.mode != "direct" else float("nan")
        per_kev = r.proxy_cpu / r.events * 1000 if r.events and r.mode != "direct" else float("nan")
        print(
            f"{r.mode:7s} {r.concurrency:<3d} {'stream' if r.stream else 'whole '} "
            f"{len(r.results):4d} {r.errors:4d} "
            f"{fmt(r.pct('ttfb', 0.5))} {fmt(r.pct('ttfb', 0.9))} "
            f"{fmt(r.pct('total', 0.5), 9)} {fmt(r.pct('total', 0.9))} "
            f"{fmt(r.rps, 8)} {fmt(per_req, 12, 2)}   {fmt(per_kev, 10, 3)}   "
            f"{fmt(r.emu_cpu / n_ok * 1000, 10, 2)}   {fmt(r.peak_mb, 7)}"
        )

    def find(mode: str, c: int, stream: bool) -> Row | None:
        return next(
            (r for r in rows if r.mode == mode and r.concurrency == c and r.stream == stream), None
        )

    print()
    print("targets (issue 7); ratios against the direct baseline of this run:")
    for mode in ("reverse", "proxy"):
        base, ours = find("direct", 1, True), find(mode, 1, True)
        if base and ours:
            added = ours.pct("ttfb", 0.5) - base.pct("ttfb", 0.5)
            added_total = ours.pct("total", 0.5) - base.pct("total", 0.5)
            verdict = "met" if added <= TARGETS["ttfb_added_ms"] else "MISSED"
            print(
                f"  c=1 stream, {mode:7s}: added TTFB p50 {added:5.2f} ms "
                f"(target <= {TARGETS['ttfb_added_ms']:.0f}, "
                f"original {ORIGINAL['ttfb_added_ms']:.0f}) "
                f"{verdict}; ratio {ours.pct('ttfb', 0.5) / base.pct('ttfb', 0.5):.2f}x; "
                f"added total p50 {added_total:5.2f} ms (original {ORIGINAL['total_added_ms']:.0f})"
            )
    for mode in ("reverse", "proxy"):
        for stream in (True, False):
            base, ours = find("direct", 50, stream), find(mode, 50, stream)
            if not ours:
                continue
            per_req = ours.proxy_cpu / max(1, len(ours.ok)) * 1000
            original = ORIGINAL["rps_c50_stream" if stream else "rps_c50_whole"]
            ratio = f"{ours.rps / base.rps:.2f}x direct" if base and base.rps else "no direct row"
            line = (
                f"  c=50 {'stream' if stream else 'whole '}, {mode:7s}: {ours.rps:6.1f} req/s "
                f"({ratio}, original {original:.0f}); proxy CPU {per_req:.2f} ms/req "
                f"(target <= {TARGETS['cpu_ms_per_req']}, "
                f"original ~{ORIGINAL['cpu_ms_per_req']:.0f})"
            )
            if stream:
                ok = ours.rps >= TARGETS["rps_c50_stream"] and per_req <= TARGETS["cpu_ms_per_req"]
                line += " met" if ok else " MISSED"
            print(line)
    for mode in ("reverse", "proxy"):
        for stream in (True, False):
            ours = find(mode, 200, stream)
            if ours:
                print(
                    f"  c=200 {'stream' if stream else 'whole '}, {mode:7s}: {ours.errors} errors "
                    f"of {len(ours.results)}; peak RSS {ours.peak_mb:.0f} MB (target <= "
                    f"{TARGETS['memory_mb']:.0f}, original {ORIGINAL_MEMORY[0]:.0f}-"
                    f"{ORIGINAL_MEMORY[1]:.0f}) "
                    + (
                        "met"
                        if not ours.errors and ours.peak_mb <= TARGETS["memory_mb"]
                        else "MISSED"
                    )
                )
    print("  proxy RSS after the run: " + ", ".join(f"{k} {v:.0f} MB" for k, v in rss_idle.items()))


if __name__ == "__main__":
    main()
