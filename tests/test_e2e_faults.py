"""The fault matrix: every way the backend fails × streamed or not × one direct
token or a pool of three, through chat2api started as run.sh starts it, with the
official SDK.

For each cell the expected outcome is written down in :data:`MATRIX` below:

* ``RETRIED`` – a success: the whole, exact answer, produced by a second
  conversation call made with *another* pool token;
* ``OK`` – a success on the first call (the fault is tolerated);
* ``FILTERED`` – an honest content-filter end: ``finish_reason="content_filter"``
  and no text;
* ``error(Class, status)`` – the SDK raises that exception class, and no text
  arrived;
* ``broken(Class)`` – a streamed answer that had started: some exact prefix of
  the answer, then the SDK raises ``Class`` (never a ``finish_reason``).

Every cell must also end within its bound (``within``): never a hang, never a
traceback in the proxy's log, never a fake success.

One mitmdump serves both token set-ups: a client whose API key is the
AUTHORIZATION code uses the pool (three fresh tokens per cell, put in through
the admin API so each cell starts with healthy accounts), a client whose key
is an access token uses that token directly. Fault plans apply to the next
conversation call only, so a retry on another account gets a clean answer.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakechatgpt.answers import expected_answer
from tests.fakechatgpt.harness import Emulator, mint_access_token
from tests.support.cells import run_cells
from tests.support.mitm import Mitm, MitmFactory

CODE = "faults-pool-code-0123456789"
ADMIN_KEY = "faults-admin-key-0123456789"
IDLE = 2.0  # TIMEOUT_IDLE of the proxy under test
STALL_MS = 6000  # longer than IDLE: a stall the proxy must give up on
MID = 12  # events before a mid-stream fault (the answer's text has begun by then)


@dataclass(frozen=True)
class Expect:
    kind: str  # "retried" | "ok" | "filtered" | "error" | "broken"
    error_class: str | None = None
    status: int | None = None
    within: float = 10.0  # seconds the client may wait at most

    def __str__(self) -> str:
        extra = f" {self.error_class}" if self.error_class else ""
        return f"{self.kind}{extra}{f' {self.status}' if self.status else ''}"


RETRIED = Expect("retried")
OK = Expect("ok")
FILTERED = Expect("filtered")


def error(cls: str, status: int | None, within: float = 10.0) -> Expect:
    return Expect("error", cls, status, within)


def broken(cls: str, within: float = 10.0) -> Expect:
    return Expect("broken", cls, None, within)


def refusal(cls: str, status: int) -> dict[tuple[bool, bool], Expect]:
    """A refusal before any byte: the account's fault, so a pool retries it elsewhere."""
    return {
        (False, False): error(cls, status),
        (True, False): error(cls, status),
        (False, True): RETRIED,
        (True, True): RETRIED,
    }


def same(whole: Expect, streamed: Expect | None = None) -> dict[tuple[bool, bool], Expect]:
    """The same outcome with one token or a pool (not the account's fault, or too late)."""
    s = streamed or whole
    return {(False, False): whole, (True, False): s, (False, True): whole, (True, True): s}


STALL_BOUND = IDLE + 6  # the idle timeout, then an answer (or a retry and an answer)

# fault name -> (emulator plan, {(streamed, pool): expected outcome})
MATRIX: dict[str, tuple[dict[str, Any] | None, dict[tuple[bool, bool], Expect]]] = {
    "401": ({"preset": "unauthorized"}, refusal("AuthenticationError", 401)),
    "403-cloudflare": ({"preset": "cloudflare"}, refusal("PermissionDeniedError", 403)),
    "403-unusual-activity": ({"preset": "unusual_activity"}, refusal("PermissionDeniedError", 403)),
    "404-model": ({"preset": "model_not_found"}, same(error("NotFoundError", 404))),
    "429-clears-in": ({"preset": "rate_limit"}, refusal("RateLimitError", 429)),
    "500": ({"preset": "server_error"}, refusal("InternalServerError", 502)),
    "502": ({"preset": "bad_gateway"}, refusal("InternalServerError", 502)),
    "stall-before-first-event": (
        {"stall_ms": STALL_MS},
        {
            (False, False): error("InternalServerError", 504, STALL_BOUND),
            (True, False): error("InternalServerError", 504, STALL_BOUND),
            (False, True): Expect("retried", within=STALL_BOUND),
            (True, True): Expect("retried", within=STALL_BOUND),
        },
    ),
    "stall-mid-stream": (
        {"stall_ms": STALL_MS, "stall_after_events": MID},
        same(error("InternalServerError", 504, STALL_BOUND), broken("APIError", STALL_BOUND)),
    ),
    "drop-mid-stream": (
        {"drop_after_events": MID},
        same(error("InternalServerError", 502), broken("APIError")),
    ),
    "error-event-first": (
        {"error_event": "Something went wrong upstream"},
        refusal("InternalServerError", 502),
    ),
    "error-event-mid-stream": (
        {"error_event": "Something went wrong upstream", "error_after_events": MID},
        same(error("InternalServerError", 502), broken("APIError")),
    ),
    # One broken event among good ones is skipped: the answer is whole.
    "malformed-event": ({"malformed_event": True}, same(OK)),
    "moderation-block": ({"moderation": True}, same(FILTERED)),
}

# The backend cannot be reached at all (its own mitmdump, pointed at a closed port).
CONNECT_REFUSED = same(error("InternalServerError", 503))


def proxy_settings(base_url: str) -> dict[str, str]:
    return {
        "CHATGPT_BASE_URL": base_url,
        "AUTHORIZATION": CODE,
        "ADMIN_KEY": ADMIN_KEY,
        "TIMEOUT_IDLE": str(IDLE),
        "TIMEOUT_FIRST_BYTE": "2.5",
        "TIMEOUT_CONNECT": "3",
        "TIMEOUT_TOTAL": "30",
    }


def pool() -> list[str]:
    """Three pool tokens in ``token.txt`` before start-up, as users keep them."""
    return [mint_access_token(exp_in=86400) for _ in range(3)]


@pytest.fixture(scope="module")
def chat2api_options(emulator: Emulator) -> dict[str, Any]:
    # Started as run.sh starts it (the lean launcher, with its layer shim); the
    # other end-to-end modules run plain `mitmdump -s addons/chat2api.py`.
    return {"env": proxy_settings(emulator.url), "pool": pool(), "launcher": True}


def cells_for(fault: str, plan: dict[str, Any] | None) -> list[dict[str, Any]]:
    cells = []
    for pool in (False, True):
        for stream in (False, True):
            name = cell_name(fault, stream, pool)
            tokens = [mint_access_token(exp_in=86400) for _ in range(3)]
            cells.append(
                {
                    "name": name,
                    "prompt": f"fault {name}",
                    "stream": stream,
                    "key": CODE if pool else mint_access_token(exp_in=86400),
                    "pool": tokens if pool else None,
                    "plan": plan,
                    "timeout": 40,
                    # Let the emulator notice a connection we closed before reading its log.
                    "settle": 0.3 if plan and ("stall_ms" in plan) else 0,
                }
            )
    return cells


def cell_name(fault: str, stream: bool, pool: bool) -> str:
    return f"{fault}/{'stream' if stream else 'whole'}/{'pool' if pool else 'single'}"


def check(cell: dict[str, Any], result: dict[str, Any], want: Expect) -> list[str]:
    """What is wrong with ``result`` for the outcome ``want`` (empty: all good)."""
    problems: list[str] = []
    answer = expected_answer(cell["prompt"], "gpt-4o")
    err = result["error"]
    calls = result["calls"]
    if result["elapsed"] > want.within:
        problems.append(f"took {result['elapsed']:.1f} s (bound {want.within} s)")
    if want.kind in ("ok", "retried"):
        if err is not None:
            problems.append(f"raised {err}")
        if result["text"] != answer:
            problems.append(f"text {result['text'][:80]!r} is not the whole answer")
        if result["finish_reason"] != "stop":
            problems.append(f"finish_reason {result['finish_reason']!r}")
        if want.kind == "retried":
            auths = [c["authorization"] for c in calls]
            pool = {f"Bearer {t}" for t in cell["pool"]}
            if len(auths) != 2 or len(set(auths)) != 2 or not set(auths) <= pool:
                problems.append(f"not retried once on another pool token: {len(auths)} calls")
        elif len(calls) != 1:
            problems.append(f"{len(calls)} conversation calls, expected 1")
    elif want.kind == "filtered":
        if err is not None:
            problems.append(f"raised {err}")
        if result["text"] or result["finish_reason"] != "content_filter":
            problems.append(f"not a content_filter end: {result['finish_reason']!r}")
    elif want.kind == "error":
        if err is None or err["error_class"] != want.error_class or err["status"] != want.status:
            problems.append(f"expected {want.error_class} {want.status}, got {err}")
        if result["text"] or result["finish_reason"] is not None:
            problems.append("an answer arrived with the error")
    elif want.kind == "broken":
        if err is None or err["error_class"] != want.error_class:
            problems.append(f"expected {want.error_class} mid-stream, got {err}")
        if not result["text"] or not answer.startswith(result["text"]) or result["text"] == answer:
            problems.append(f"text {result['text'][:80]!r} is not a true part of the answer")
        if result["finish_reason"] is not None:
            problems.append(f"a finish_reason {result['finish_reason']!r} came with the error")
    # Whatever the outcome: a stall we gave up on is a connection we closed.
    if cell["plan"] and "stall_ms" in cell["plan"]:
        if any(c["ended"] is None and not c["client_disconnected"] for c in calls[:1]):
            problems.append(f"the stalled backend stream was not closed: {calls[:1]}")
    return problems


def assert_cells(
    results: dict[str, dict[str, Any]],
    cells: list[dict[str, Any]],
    table: dict[tuple[bool, bool], Expect],
) -> None:
    failures = []
    for cell in cells:
        want = table[(cell["stream"], cell["pool"] is not None)]
        result = results[cell["name"]]
        for problem in check(cell, result, want):
            failures.append(f"{cell['name']} (expected {want}): {problem}")
    assert not failures, "\n".join(failures)


def assert_clean_log(mitm: Mitm) -> None:
    log = mitm.log()
    for bad in ("Traceback", "mitmproxy has crashed", "Addon error"):
        assert bad not in log, log[log.find(bad) - 2000 : log.find(bad) + 2000]


@pytest.mark.parametrize("fault", list(MATRIX))
def test_fault_matrix(emulator: Emulator, mitm: Mitm, fault: str) -> None:
    plan, table = MATRIX[fault]
    cells = cells_for(fault, plan)
    results = run_cells(mitm, cells, emulator_url=emulator.url, admin_key=ADMIN_KEY)
    assert_cells(results, cells, table)
    assert_clean_log(mitm)


def test_connect_refused(mitm_factory: MitmFactory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    mitm = mitm_factory(proxy_settings(closed), pool=pool())
    cells = cells_for("connect-refused", None)
    results = run_cells(mitm, cells, emulator_url=None, admin_key=ADMIN_KEY)
    assert_cells(results, cells, CONNECT_REFUSED)
    assert_clean_log(mitm)
