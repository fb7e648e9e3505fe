"""Load and soak: many concurrent streams through one mitmdump, with backend faults mixed in.

    python bench/soak.py [--clients 200] [--minutes 3] [--fault-share 0.05] [--json PATH]

Starts the backend emulator and one mitmdump with chat2api (a pool of three
accounts behind an AUTHORIZATION code, short idle timeout), then runs
``--clients`` client loops for ``--minutes`` on keep-alive connections to the
reverse listener. Each loop asks, again and again, a prompt of its own (client
number, request number, a random tag) and checks that it got *exactly its own
answer* (``expected_answer(prompt, model)``), streamed (most) or whole.

Before every request the client queues one emulator plan (plans serve the next
conversation calls in order, whoever makes them): a paced answer (events
``--pace-ms`` apart, so streams overlap) or, with probability
``--fault-share``, a fault: a 500 or 502 before the answer (a pool retries
those on another account), a drop, an error event or a stall mid-stream, or a
malformed event. Every answer is then one of:

* ``ok``: the whole, exact answer with its end (``finish_reason`` + ``[DONE]``);
* ``failed``: an honest failure: an OpenAI error status, or a stream that carried
  a true part of the answer and then an ``{"error": ...}`` event;
* ``lost``: no answer, a broken connection, a stream that just stopped, a
  timeout;
* ``mixed``: any text that is not (a part of) the client's own answer, or a
  success with a wrong text.

The run passes with 0 lost and 0 mixed. Every ``--sample`` seconds the
mitmdump's resident memory and open file descriptors are recorded; after
warm-up (the first quarter) memory must stay flat (``--rss-slack-mb``), and
after the run, once idle, the descriptors must be back near where they started.
Prints a summary (and writes it as JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fakechatgpt.answers import expected_answer  # noqa: E402
from tests.fakechatgpt.harness import mint_access_token, run_emulator  # noqa: E402
from tests.support.mitm import Mitm, start_mitm  # noqa: E402
from tests.support.rawhttp import Connection  # noqa: E402

CODE = "soak-pool-code-0123456789"
MODELS = ("gpt-4o", "gpt-4o-mini")

FAULTS: list[dict[str, Any]] = [
    {"preset": "server_error"},
    {"preset": "bad_gateway"},
    {"drop_after_events": 14},
    {"error_event": "Something went wrong upstream", "error_after_events": 14},
    {"stall_ms": 5000, "stall_after_events": 14},
    {"malformed_event": True},
]


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def bad(self, kind: str, what: str) -> None:
        self.outcomes[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {what}")


def judge(prompt: str, model: str, stream: bool, status: int, body: bytes) -> tuple[str, str]:
    """(outcome, detail) of one answer; see the module docstring."""
    answer = expected_answer(prompt, model)
    if status != 200:
        try:
            error = json.loads(body)["error"]
            assert isinstance(error["message"], str)
        except (ValueError, KeyError, TypeError, AssertionError):
            return "lost", f"{status} without an OpenAI error: {body[:100]!r}"
        return "failed", f"{status}"
    if not stream:
        try:
            data = json.loads(body)
            text = data["choices"][0]["message"]["content"]
            reason = data["choices"][0]["finish_reason"]
        except (ValueError, KeyError, TypeError, IndexError):
            return "lost", f"200 without a completion: {body[:100]!r}"
        if text != answer or reason != "stop":
            return "mixed", f"whole answer {text[:60]!r} for {prompt!r}"
        return "ok", ""
    text, done, error, finish = "", False, None, None
    for line in body.split(b"\n"):
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            done = True
            continue
        try:
            event = json.loads(data)
        except ValueError:
            return "lost", f"an event that is not JSON: {data[:80]!r}"
        if "error" in event:
            error = event["error"]
            continue
        for choice in event.get("choices", []):
            text += choice.get("delta", {}).get("content") or ""
            finish = choice.get("finish_reason") or finish
    if not answer.startswith(text):
        return "mixed", f"streamed {text[:60]!r} for {prompt!r}"
    if error is not None:
        return ("failed", "error event") if finish is None else ("mixed", "error after finish")
    if done and finish == "stop" and text == answer:
        return "ok", ""
    return "lost", f"stream ended without its end or an error ({len(text)} chars)"


async def fake(url: str, plan: dict[str, Any]) -> None:
    """Queue a plan (a tiny HTTP/1.1 POST; the emulator closes or keeps the connection)."""
    host, port = url.removeprefix("http://").split(":")
    conn = Connection(host, int(port))
    try:
        await conn.request(
            "POST", "/_fake/next", json.dumps(plan).encode(), {"content-type": "application/json"}
        )
    finally:
        await conn.close()


async def client_loop(
    n: int,
    mitm: Mitm,
    emu_url: str,
    until: float,
    args: argparse.Namespace,
    tally: Tally,
) -> None:
    rng = random.Random(n)
    conn = Connection("127.0.0.1", mitm.reverse_port)
    i = 0
    try:
        while time.monotonic() < until:
            i += 1
            model = rng.choice(MODELS)
            stream = rng.random() < 0.85
            prompt = f"soak client {n} request {i} tag {rng.getrandbits(40):x}"
            plan: dict[str, Any] = {"delay_ms": args.pace_ms}
            if rng.random() < args.fault_share:
                plan = dict(rng.choice(FAULTS), delay_ms=args.pace_ms)
            body = json.dumps(
                {
                    "model": model,
                    "stream": stream,
                    "messages": [{"role": "user", "content": prompt}],
                }
            ).encode()
            headers = {"authorization": f"Bearer {CODE}", "content-type": "application/json"}
            started = time.monotonic()
            try:
                await fake(emu_url, plan)
                answer = await conn.request(
                    "POST", "/v1/chat/completions", body, headers, timeout=args.timeout
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as e:
                tally.bad("lost", f"{prompt}: {e!r}")
                await conn.close()
                continue
            tally.statuses[answer.status] += 1
            outcome, detail = judge(prompt, model, stream, answer.status, answer.body)
            if outcome in ("ok", "failed"):
                tally.outcomes[outcome] += 1
                tally.latencies.append(time.monotonic() - started)
            else:
                tally.bad(outcome, detail)
    finally:
        await conn.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def pooled_backend_connections(pid: int, backend_port: int) -> int:
    """Open TCP connections of ``pid`` to the backend: curl's keep-alive cache, which
    is bounded (about one per concurrent request at the peak) and reused, not leaked."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            parts = line.split()
            if parts[9] in inodes and int(parts[2].rsplit(":", 1)[1], 16) == backend_port:
                count += 1
    return count


async def soak(mitm: Mitm, emu_url: str, args: argparse.Namespace) -> dict[str, Any]:
    pid = mitm.proc.pid
    # A few requests first: one-time set-up (the backend client, its curl handles) is not a leak.
    await client_loop(-1, mitm, emu_url, time.monotonic() + 1.0, args, Tally())
    await asyncio.sleep(0.5)
    tally = Tally()
    samples: list[tuple[float, float, int]] = []
    backend_port = int(emu_url.rsplit(":", 1)[1])
    fds_before = fd_count(pid) - pooled_backend_connections(pid, backend_port)
    rss_before = rss_mb(pid)
    started = time.monotonic()
    until = started + args.minutes * 60

    async def sampler() -> None:
        while time.monotonic() < until:
            samples.append((time.monotonic() - started, rss_mb(pid), fd_count(pid)))
            await asyncio.sleep(args.sample)

    sampling = asyncio.create_task(sampler())
    await asyncio.gather(
        *(client_loop(n, mitm, emu_url, until, args, tally) for n in range(args.clients))
    )
    await sampling
    wall = time.monotonic() - started
    # Idle again: every client connection, streamed answer and backend stream returned;
    # only curl's cache of idle keep-alive connections to the backend may stay.

    def others() -> int:
        return fd_count(pid) - pooled_backend_connections(pid, backend_port)

    fds_after = others()
    deadline = time.monotonic() + 15
    while fds_after > fds_before + args.fd_slack and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        fds_after = others()
    pooled = pooled_backend_connections(pid, backend_port)
    rss = [s[1] for s in samples]
    warm = rss[len(rss) // 4 : len(rss) // 2] or rss
    late = rss[len(rss) // 2 :] or rss
    lat = sorted(tally.latencies) or [0.0]
    total = sum(tally.outcomes.values())
    return {
        "clients": args.clients,
        "seconds": round(wall, 1),
        "requests": total,
        "requests_per_s": round(total / wall, 1),
        "outcomes": dict(tally.outcomes),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "lost": tally.outcomes["lost"],
        "mixed": tally.outcomes["mixed"],
        "examples": tally.examples,
        "latency_p50_s": round(lat[len(lat) // 2], 2),
        "latency_p99_s": round(lat[int(len(lat) * 0.99)], 2),
        "rss_mb": {
            "idle": round(rss_before, 1),
            "after_warm_up_max": round(max(warm), 1),
            "second_half_max": round(max(late), 1),
            "end": round(rss[-1] if rss else 0.0, 1),
        },
        "rss_growth_after_warm_up_mb": round(max(late) - max(warm), 1),
        "fds": {
            "idle_before": fds_before,
            "peak": max((s[2] for s in samples), default=0),
            "idle_after": fds_after,
            "idle_after_pooled_backend_connections": pooled,
        },
        "samples": [(round(t), round(m, 1), f) for t, m, f in samples],
    }


def verdict(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """What failed (empty: the run passed)."""
    problems = []
    if result["lost"] or result["mixed"]:
        problems.append(f"{result['lost']} lost, {result['mixed']} mixed: {result['examples'][:5]}")
    if result["rss_growth_after_warm_up_mb"] > args.rss_slack_mb:
        problems.append(f"memory grew {result['rss_growth_after_warm_up_mb']} MB after warm-up")
    fds = result["fds"]
    if fds["idle_after"] > fds["idle_before"] + args.fd_slack:
        problems.append(f"file descriptors not returned: {fds}")
    if fds["idle_after_pooled_backend_connections"] > result["clients"] + args.fd_slack:
        problems.append(f"more idle backend connections than clients: {fds}")
    if result["outcomes"].get("ok", 0) == 0:
        problems.append("no request succeeded")
    return problems


def settings(emu_url: str) -> tuple[dict[str, str], list[str]]:
    """chat2api's settings for the run, and the pool of three tokens it starts with."""
    env = {
        "CHATGPT_BASE_URL": emu_url,
        "AUTHORIZATION": CODE,
        "TIMEOUT_IDLE": "2",
        "TIMEOUT_FIRST_BYTE": "10",
    }
    return env, [mint_access_token(exp_in=7 * 86400) for _ in range(3)]


def measure(mitm: Mitm, emu_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """The soak against a running chat2api, with what its log and the machine showed."""
    result = asyncio.run(soak(mitm, emu_url, args))
    result["tracebacks_in_log"] = mitm.log().count("Traceback")
    result["load_average"] = os.getloadavg()
    result["cpus"] = os.cpu_count()
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    with run_emulator() as emu, tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        env, pool = settings(emu.url)
        data = Path(tmp) / "data"
        data.mkdir()
        (data / "token.txt").write_text("".join(t + "\n" for t in pool))
        with start_mitm(Path(tmp), env) as mitm:
            return measure(mitm, emu.url, args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--fault-share", type=float, default=0.05)
    ap.add_argument("--pace-ms", type=float, default=40, help="pause between backend events")
    ap.add_argument("--timeout", type=float, default=120, help="per request, in seconds")
    ap.add_argument("--sample", type=float, default=2.0, help="seconds between RSS/fd samples")
    ap.add_argument("--rss-slack-mb", type=float, default=40.0)
    ap.add_argument("--fd-slack", type=int, default=8)
    ap.add_argument("--json", type=Path, help="also write the result here")
    return ap.parse_args(argv)


def main() -> None:
    args = parse_args()
    result = run(args)
    problems = verdict(result, args)
    if result["tracebacks_in_log"]:
        problems.append(f"{result['tracebacks_in_log']} tracebacks in the mitmdump log")
    shown = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(shown, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print("PASS" if not problems else "FAIL:\n  " + "\n  ".join(problems))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
