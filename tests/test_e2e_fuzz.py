"""Hostile requests, in process and against a running mitmdump.

* In process (hypothesis): the whole request path, :meth:`service.api.ApiApp.handle`
  with random methods, paths, headers and bodies (wrong types, deep nesting,
  huge strings, invalid UTF-8), answers every one with an OpenAI-shaped reply
  and never raises; memory stays bounded. The parser and the stream translator
  have their own property tests (``test_translator_request.py``,
  ``test_translator_fuzz.py``).
* Against mitmdump: 10,000 random and mutated bodies over keep-alive
  connections to the reverse listener. Every answer is JSON and OpenAI-shaped,
  the log holds no traceback, and the process's memory is flat after warm-up.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from errors import UpstreamUnavailable
from service.api import ApiApp, Reply, StreamReply
from settings.model_table import parse_model_table
from tests.fakechatgpt.harness import Emulator, mint_access_token, next_plan, run_emulator
from tests.support.mitm import Mitm, start_mitm
from tests.support.rawhttp import Connection
from tests.test_translator_captures import FIXTURES

REQUESTS = 10_000
WORKERS = 16
MAX_BODY = 1 << 20

VALID: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ],
    "stream": False,
}
FIELDS = ["model", "messages", "stream", "stream_options", "n", "max_tokens", "temperature",
          "top_p", "stop", "tools", "tool_choice", "reasoning_effort", "conversation_id",
          "history_disabled", "user", "response_format", "seed", "logprobs"]  # fmt: skip
MESSAGE_FIELDS = ["role", "content", "name", "tool_calls", "tool_call_id"]


def junk(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value: wrong types, odd numbers, odd strings, some nesting."""
    kind = rng.randrange(10 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**63, -(2**64), 10**30, 3])
    if kind == 3:
        return rng.choice([0.5, -1e308, 1e308, 1e-320, 2.0])
    if kind == 4:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x2FFFF)]))
                       for _ in range(rng.randrange(12)))  # fmt: skip
    if kind == 5:
        return rng.choice(["", "user", "assistant", "tool", "gpt-4o", "o3-mini", "image_url",
                           "\ud800", "\x00", "a" * rng.randrange(1, 5000)])  # fmt: skip
    if kind == 6:
        return {"type": rng.choice(["text", "image_url", "file", "input_audio", "x"]),
                "text": junk(rng, 3), "image_url": junk(rng, 3)}  # fmt: skip
    if kind == 7:
        return [junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 8:
        return {rng.choice(FIELDS + MESSAGE_FIELDS): junk(rng, depth + 1) for _ in range(3)}
    return [{"role": junk(rng, depth + 1), "content": junk(rng, depth + 1)}]


def mutated(rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(VALID))
    for _ in range(rng.randrange(1, 4)):
        where = rng.random()
        if where < 0.4:
            body[rng.choice(FIELDS)] = junk(rng)
        elif where < 0.8 and isinstance(body.get("messages"), list) and body["messages"]:
            msg = rng.choice(body["messages"])
            if isinstance(msg, dict):
                msg[rng.choice(MESSAGE_FIELDS)] = junk(rng)
        else:
            body.pop(rng.choice(FIELDS), None)
    return body


def request_for(rng: random.Random) -> tuple[str, str, dict[str, str], bytes]:
    """(method, path, headers, body) of one hostile request."""
    headers = {"content-type": "application/json"}
    if rng.random() < 0.5:
        headers["authorization"] = rng.choice(
            # (the raw client sends each character as one byte: "\xff" is an invalid UTF-8 byte)
            [
                "Bearer sk-fuzz",
                "Bearer ",
                "Basic abc",
                "Bearer eyJ.x.y",
                "Bearer a,b,c",
                "Bearer \xff\xfe\xc3\x28",
            ]
        )
    method, path = "POST", "/v1/chat/completions"
    r = rng.random()
    if r < 0.45:
        # Raw (not \u-escaped) text half the time; lone surrogates become invalid UTF-8.
        text = json.dumps(mutated(rng), ensure_ascii=rng.random() < 0.5)
        body = text.encode("utf-8", "surrogatepass")
    elif r < 0.55:  # deep nesting
        depth = rng.choice([10, 1000, 100_000])
        opener = rng.choice([b"[", b'{"a":', b'{"messages":['])
        body = opener * depth + (b"" if rng.random() < 0.5 else b"1")
    elif r < 0.65:  # invalid UTF-8 and other bytes spliced into a good body
        good = json.dumps(VALID).encode()
        at = rng.randrange(len(good))
        junk_bytes = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"\xf8\x88"])
        body = good[:at] + junk_bytes + good[at:]
    elif r < 0.72:  # random bytes
        body = rng.randbytes(rng.randrange(300))
    elif r < 0.78:  # a huge string in a message
        size = rng.choice([10_000, 200_000]) if rng.random() < 0.97 else MAX_BODY + 1000
        big = dict(VALID, messages=[{"role": "user", "content": "x" * size}])
        body = json.dumps(big).encode()
    elif r < 0.86:  # odd content types
        headers["content-type"] = rng.choice(
            [
                "text/html",
                "multipart/form-data; boundary=x",
                "",
                "application/x-www-form-urlencoded",
            ]
        )
        body = json.dumps(mutated(rng)).encode()
    elif r < 0.93:  # other routes and methods
        method = rng.choice(["GET", "PUT", "DELETE", "PATCH", "POST"])
        path = rng.choice(
            ["/v1/models", "/v1/models/gpt-4o", "/v1/models/%00", "/v1/embeddings", "/v1",
             "/v1/chat/completions/x", "/v1/chat/completions?x=1", "/v1/images/generations",
             "/v1//chat/completions", "/v1/models/" + "a" * 3000, "/v1/models/\xff\xc3\x28",
             "/v1/chat/completions\xff"]
        )  # fmt: skip
        body = json.dumps(junk(rng)).encode() if method != "GET" else b""
    else:  # well-formed: the backend (a closed port) cannot be reached
        body = json.dumps(dict(VALID, stream=rng.random() < 0.5)).encode()
    return method, path, headers, body


def check_openai_shape(status: int, content_type: str, payload: bytes) -> str | None:
    """Why the answer is not OpenAI-shaped JSON (None: it is)."""
    if "json" not in content_type:
        return f"content type {content_type!r}"
    try:
        data = json.loads(payload)
    except ValueError:
        return f"not JSON: {payload[:100]!r}"
    if status == 200:
        if isinstance(data, dict) and data.get("object") in ("list", "model", "chat.completion"):
            return None
        return f"200 with {str(data)[:100]}"
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
        return f"{status} without an OpenAI error: {payload[:200]!r}"
    if not isinstance(error["message"], str) or not isinstance(error["type"], str):
        return f"{status} with a malformed error: {payload[:200]!r}"
    if not 400 <= status < 600:
        return f"status {status}"
    return None


# -- in process ---------------------------------------------------------------------


class _NoBackend:
    """The completion service, as far as the routes see it: no backend reachable."""

    async def prime(self, *args: Any, **kwargs: Any) -> Any:
        raise UpstreamUnavailable("no backend in this test")


def _app() -> ApiApp:
    return ApiApp(
        api_root="/v1",
        models=parse_model_table(None),
        unknown_model="default",
        completions=_NoBackend(),  # type: ignore[arg-type]
        max_body_bytes=MAX_BODY,
        history_disabled=True,
    )


# Named functions, not lambdas: hypothesis reads a lambda's source to describe it.
def _api_path(tail: str) -> str:
    return "/v1/" + tail


def _encoded(value: Any) -> bytes:
    return json.dumps(value).encode()


def _json_tree(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner)


def _mutated_body(seed: int) -> bytes:
    return json.dumps(mutated(random.Random(seed))).encode()


def _hostile_body(seed: int) -> bytes:
    return request_for(random.Random(seed))[3]


methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "post", ""])
paths = st.sampled_from(
    ["/v1/chat/completions", "/v1/models", "/v1/models/gpt-4o", "/v1/x", "/", "/v1",
     "/v1/chat/completions/", "/v1/images/generations", "/v2/chat/completions"]
) | st.text(max_size=40).map(_api_path)  # fmt: skip
header_maps = st.dictionaries(
    st.sampled_from(["content-type", "authorization", "chatgpt-account-id", "x-any"]),
    st.text(max_size=30),
    max_size=4,
)
json_bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    _json_tree,
    max_leaves=25,
).map(_encoded)
bodies = (
    st.binary(max_size=300)
    | json_bodies
    | st.builds(_mutated_body, st.integers())
    | st.builds(_hostile_body, st.integers())
)


def _shape_of(reply: Reply | StreamReply) -> str | None:
    if isinstance(reply, StreamReply):
        return "a stream without a backend"
    return check_openai_shape(reply.status, reply.headers.get("content-type", ""), reply.body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(methods, paths, header_maps, bodies)
def test_every_request_gets_an_openai_answer(
    method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    reply = asyncio.run(_app().handle(method, path, headers, body))
    problem = _shape_of(reply)
    assert problem is None, problem


def test_memory_stays_bounded_under_hostile_requests() -> None:
    app = _app()
    rng = random.Random(7)

    async def run(n: int) -> None:
        for _ in range(n):
            method, path, headers, body = request_for(rng)
            reply = await app.handle(method, path, headers, body)
            assert _shape_of(reply) is None

    tracemalloc.start(1)
    try:
        asyncio.run(run(100))  # warm-up: caches, tokenizer tables
        gc.collect()  # failed parses leave exception-traceback cycles behind
        warm, _ = tracemalloc.get_traced_memory()
        asyncio.run(run(400))
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - warm < 512 * 1024, (warm, after)
    # One request at a time holds at most a few copies of the largest body.
    assert peak < warm + 40 * MAX_BODY


# -- against mitmdump ----------------------------------------------------------------


@pytest.fixture(scope="module")
def mitm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mitm]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = {"CHATGPT_BASE_URL": closed, "MAX_BODY_BYTES": str(MAX_BODY)}
    with start_mitm(tmp_path_factory.mktemp("fuzz"), env) as m:
        yield m


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_ten_thousand_random_bodies(mitm: Mitm) -> None:
    problems: list[str] = []
    statuses: dict[int, int] = {}
    rss: list[int] = []

    async def worker(n: int, count: int) -> None:
        rng = random.Random(1000 + n)
        conn = Connection("127.0.0.1", mitm.reverse_port)
        try:
            for i in range(count):
                method, path, headers, body = request_for(rng)
                try:
                    answer = await conn.request(method, path, body, headers, timeout=30)
                except (ConnectionError, asyncio.IncompleteReadError, TimeoutError) as e:
                    problems.append(f"{method} {path} {body[:3000]!r}: no answer: {e!r}")
                    await conn.close()
                    continue
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
                problem = check_openai_shape(
                    answer.status, answer.headers.get("content-type", ""), answer.body
                )
                if problem:
                    problems.append(f"{method} {path} {body[:80]!r}: {problem}")
                if n == 0 and i % 100 == 0:
                    rss.append(rss_kib(mitm.proc.pid))
        finally:
            await conn.close()

    async def main() -> None:
        per = REQUESTS // WORKERS
        await asyncio.gather(*(worker(n, per) for n in range(WORKERS)))

    asyncio.run(main())
    assert not problems, f"{len(problems)} bad answers, e.g.:\n" + "\n".join(problems[:10])
    assert sum(statuses.values()) == REQUESTS // WORKERS * WORKERS
    # Every kind of answer showed up: refusals of the body, 404s, 413, the backend's 503.
    assert {400, 404, 413, 503} <= set(statuses), statuses
    log = mitm.log()
    for bad in ("Traceback", "Addon error", "mitmproxy has crashed"):
        assert bad not in log, log[log.find(bad) - 1500 : log.find(bad) + 1500]
    # Flat after warm-up: the last samples are not far above the early ones.
    warm = max(rss[len(rss) // 4 : len(rss) // 2])
    assert max(rss[len(rss) // 2 :]) < warm + 40 * 1024, rss


# -- mutated real captures through the whole proxy -------------------------------------

CAPTURES = sorted(p for p in FIXTURES.glob("*/*.sse") if p.stat().st_size < 100_000)


def mutate_bytes(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randrange(1, 6)):
        if not data:
            break
        i = rng.randrange(len(data))
        kind = rng.randrange(5)
        if kind == 0:
            data[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            del data[i : i + rng.randrange(1, 60)]
        elif kind == 2:
            del data[i:]  # a cut stream
        elif kind == 3:
            data[i:i] = rng.randbytes(rng.randrange(1, 40))
        else:
            data[i:i] = data[i : i + rng.randrange(1, 300)]
    return bytes(data)


def mutate_json(rng: random.Random, raw: bytes) -> bytes:
    """Swap values inside the events' JSON for junk of another type."""
    out = []
    for line in raw.split(b"\n"):
        if line.startswith(b"data: {") and rng.random() < 0.15:
            try:
                obj = json.loads(line[6:])
            except ValueError:
                out.append(line)
                continue
            target = obj
            while isinstance(target, dict) and target and rng.random() < 0.7:
                key = rng.choice(list(target))
                if isinstance(target[key], (dict, list)) and rng.random() < 0.6:
                    target = target[key] if isinstance(target[key], dict) else {}
                    continue
                target[key] = junk(rng)
                break
            line = b"data: " + json.dumps(obj).encode("utf-8", "surrogatepass")
        out.append(line)
    return b"\n".join(out)


def check_stream(body: bytes) -> str | None:
    """Why a streamed answer is not a proper OpenAI stream (None: it is)."""
    events = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: ")]
    if not events:
        return "no events"
    finished = errored = False
    for data in events[:-1]:
        try:
            obj = json.loads(data)
        except ValueError:
            return f"an event that is not JSON: {data[:80]!r}"
        if "error" in obj:
            errored = True
        elif any(c.get("finish_reason") for c in obj.get("choices", [])):
            finished = True
    last = events[-1]
    if last == b"[DONE]":
        return None if finished and not errored else "[DONE] without a clean finish"
    try:
        obj = json.loads(last)
    except ValueError:
        return f"ends with {last[:80]!r}"
    if "error" not in obj or finished:
        return "ends neither with [DONE] nor with an error event alone"
    return None


@pytest.fixture(scope="module")
def replaying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Emulator, Mitm]]:
    with run_emulator() as emu:
        env = {"CHATGPT_BASE_URL": emu.url, "TIMEOUT_IDLE": "2", "TIMEOUT_FIRST_BYTE": "3"}
        with start_mitm(tmp_path_factory.mktemp("replay"), env) as m:
            yield emu, m


def test_mutated_captures_through_the_proxy(
    replaying: tuple[Emulator, Mitm], tmp_path: Path
) -> None:
    """Real captures mutated at the byte and the JSON level, replayed by the backend:
    every answer is a proper OpenAI stream or JSON answer, whatever the damage."""
    emu, mitm = replaying
    rng = random.Random(11)
    token = mint_access_token(exp_in=86400)
    problems: list[str] = []
    kinds: dict[str, int] = {}

    async def main() -> None:
        conn = Connection("127.0.0.1", mitm.reverse_port)
        try:
            for i in range(160):
                capture = rng.choice(CAPTURES)
                raw = capture.read_bytes()
                raw = mutate_bytes(rng, raw) if i % 2 else mutate_json(rng, raw)
                path = tmp_path / f"m{i}.sse"
                path.write_bytes(raw)
                next_plan(emu.url, replay=str(path))
                stream = rng.random() < 0.6
                body = json.dumps(dict(VALID, stream=stream)).encode()
                headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
                answer = await conn.request("POST", "/v1/chat/completions", body, headers)
                ctype = answer.headers.get("content-type", "")
                if stream and answer.status == 200:
                    problem = check_stream(answer.body)
                    kind = "done" if answer.body.rstrip().endswith(b"[DONE]") else "error event"
                else:
                    problem = check_openai_shape(answer.status, ctype, answer.body)
                    kind = str(answer.status)
                kinds[kind] = kinds.get(kind, 0) + 1
                if problem:
                    problems.append(f"{capture.name} #{i} (stream={stream}): {problem}")
        finally:
            await conn.close()

    asyncio.run(main())
    assert not problems, "\n".join(problems[:10])
    # Both ends were exercised: damage the answer survived, and damage it did not.
    assert kinds.get("done", 0) + kinds.get("200", 0) > 20, kinds
    assert kinds.get("error event", 0) + kinds.get("502", 0) > 20, kinds
    log = mitm.log()
    assert "Traceback" not in log, log[log.find("Traceback") - 1500 : log.find("Traceback") + 1500]
