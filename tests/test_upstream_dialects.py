"""The dialects against a scripted backend: which calls, in which order, with which bodies.

The end-to-end checks against the strict emulator are in ``test_e2e_dialects.py``; here the
backend is a script of answers, so refusals and odd answers can be staged exactly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import pow
from accounts.pool import Credential, Source
from errors import Chat2ApiError, NotFound, UpstreamError
from service.runtime import make_dialect
from settings import SettingsError, load_settings
from upstream.auto import AutoDialect
from upstream.classic import ClassicDialect
from upstream.common import Limits
from upstream.context import TurnContext, make_context
from upstream.d2026 import Dialect2026
from upstream.dialect import DialectNotSpoken, ResumeRefused, Turn, TurnBodies
from upstream.http import HttpAnswer

SEED = "0.5803295893613895"
EASY = "0fffff"
SSE = {"content-type": "text/event-stream; charset=utf-8"}
JSON = {"content-type": "application/json"}


@dataclass
class FakeStream:
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: dict(SSE))
    data: bytes = b"data: [DONE]\n\n"
    closed: bool = False

    async def chunks(self, *, idle_timeout: float) -> AsyncIterator[bytes]:
        yield self.data

    async def read_all(self, limit: int = 0, timeout: float = 0) -> bytes:
        return self.data

    async def close(self) -> None:
        self.closed = True


@dataclass
class Call:
    method: str
    url: str
    headers: dict[str, str]
    body: Any


Answer = HttpAnswer | FakeStream | Callable[[Call], HttpAnswer | FakeStream]


class ScriptedHttp:
    """``BackendHttp``'s two calls, answered from ``routes`` (path suffix -> answer)."""

    def __init__(self, routes: dict[str, Answer]) -> None:
        self.routes = routes
        self.calls: list[Call] = []

    def _answer(self, call: Call) -> HttpAnswer | FakeStream:
        self.calls.append(call)
        path = call.url.split("://", 1)[1].split("/", 1)[1]
        answer = self.routes.get("/" + path)
        if answer is None:
            return HttpAnswer(status=404, headers=JSON, body=b'{"detail":"Not Found"}')
        return answer(call) if callable(answer) else answer

    async def request(self, method: str, url: str, **kw: Any) -> HttpAnswer:
        answer = self._answer(Call(method, url, dict(kw["headers"]), kw.get("json_body")))
        assert isinstance(answer, HttpAnswer)
        return answer

    async def open_stream(self, url: str, **kw: Any) -> FakeStream:
        answer = self._answer(Call("POST", url, dict(kw["headers"]), kw["json_body"]))
        if isinstance(answer, HttpAnswer):
            return FakeStream(status=answer.status, headers=dict(answer.headers), data=answer.body)
        return answer

    def paths(self) -> list[str]:
        return ["/" + c.url.split("://", 1)[1].split("/", 1)[1] for c in self.calls]

    def body_of(self, suffix: str) -> Any:
        (call,) = [c for c in self.calls if c.url.endswith(suffix)]
        return call.body

    def headers_of(self, suffix: str) -> dict[str, str]:
        (call,) = [c for c in self.calls if c.url.endswith(suffix)]
        return call.headers


def ok(obj: Any) -> HttpAnswer:
    return HttpAnswer(status=200, headers=JSON, body=json.dumps(obj).encode())


def status(code: int, obj: Any = None) -> HttpAnswer:
    return HttpAnswer(status=code, headers=JSON, body=json.dumps(obj or {"detail": "x"}).encode())


def ctx(origin: str = "https://chatgpt.example") -> TurnContext:
    credential = Credential(source=Source.DIRECT, access_token="eyJ.fake.token", token="eyJ.fake")
    return make_context(
        origins=(origin,),
        credential=credential,
        language="en-US",
        auth_key=None,
        proxy=None,
        rng=random.Random(1),
    )


BODIES = TurnBodies(
    conversation=lambda wire, state: {"wire": wire, "client_prepare_state": state, "messages": []},
    prepare=lambda: {"action": "next", "model": "gpt-4o"},
)


def proof_answer(token: str, *, suffix: bool) -> str:
    assert token.startswith(pow.PROOF_PREFIX)
    rest = token[len(pow.PROOF_PREFIX) :]
    if suffix:
        assert rest.endswith(pow.SUFFIX_2026)
        rest = rest[: -len(pow.SUFFIX_2026)]
    else:
        assert not rest.endswith(pow.SUFFIX_2026)
    return rest


def routes_2026(**over: Answer) -> dict[str, Answer]:
    routes: dict[str, Answer] = {
        "/backend-api/sentinel/chat-requirements/prepare": ok(
            {
                "persona": "chatgpt-paid",
                "prepare_token": "prep-1",
                "turnstile": {"required": False},
                "proofofwork": {"required": True, "seed": SEED, "difficulty": EASY},
                "so": {"required": False},
            }
        ),
        "/backend-api/sentinel/chat-requirements/finalize": ok(
            {"persona": "chatgpt-paid", "token": "req-1", "expire_after": 540}
        ),
        "/backend-api/f/conversation/prepare": ok({"status": "ok", "conduit_token": "ct-1"}),
        "/backend-api/f/conversation": FakeStream(),
        "/": HttpAnswer(
            status=200,
            headers={"content-type": "text/html"},
            body=b'<!doctype html><html data-build="prod-0123abcd" lang="en"></html>',
        ),
    }
    routes.update(over)
    return routes


def limits(**kw: Any) -> Limits:
    return Limits(pow_threshold="000032", **kw)


def open_turn(dialect: Any, context: TurnContext | None = None) -> Turn:
    turn: Turn = asyncio.run(dialect.open_conversation(context or ctx(), BODIES, random.Random(2)))
    return turn


# -- 2026 -------------------------------------------------------------------------------------


def test_2026_turn_calls_in_order_with_the_2026_header_set() -> None:
    http = ScriptedHttp(routes_2026())
    turn = open_turn(Dialect2026(http, limits()))  # type: ignore[arg-type]
    assert turn.wire == "2026" and turn.resumer is not None
    assert http.paths() == [
        "/",
        "/backend-api/sentinel/chat-requirements/prepare",
        "/backend-api/sentinel/chat-requirements/finalize",
        "/backend-api/f/conversation/prepare",
        "/backend-api/f/conversation",
    ]
    p = http.body_of("/f/conversation/prepare")
    assert set(http.body_of("chat-requirements/prepare")) == {"p"}
    assert p == {"action": "next", "model": "gpt-4o"}
    final = http.body_of("/finalize")
    assert set(final) == {"prepare_token", "proofofwork"}
    assert final["prepare_token"] == "prep-1"
    answer = proof_answer(final["proofofwork"], suffix=True)
    assert pow.verify(answer, SEED, EASY, algorithm="fnv1a")
    config = json.loads(base64.b64decode(answer))
    assert len(config) == 25 and config[6] == "prod-0123abcd"

    conduit = http.headers_of("/f/conversation/prepare")
    assert conduit["x-conduit-token"] == ""
    assert not any(k.startswith("openai-sentinel") for k in conduit)
    h = http.headers_of("/f/conversation")
    assert h["x-conduit-token"] == "ct-1"
    assert h["openai-sentinel-chat-requirements-token"] == "req-1"
    assert h["openai-sentinel-proof-token"] == final["proofofwork"]
    assert (
        "openai-sentinel-chat-requirements-prepare-token" not in h
    )  # never both (docs/backend-2026.md#headers)
    assert h["x-oai-turn-trace-id"] == conduit["x-oai-turn-trace-id"]
    assert h["oai-client-version"] == "prod-0123abcd"
    assert h["oai-session-id"] == conduit["oai-session-id"]
    assert h["x-openai-target-path"] == "/backend-api/f/conversation"
    assert h["accept"] == "text/event-stream"
    assert http.body_of("/f/conversation") == {
        "wire": "2026",
        "client_prepare_state": "success",
        "messages": [],
    }


def test_2026_leaves_out_proofofwork_and_turnstile_when_not_required(
    caplog: pytest.LogCaptureFixture,
) -> None:
    prepare = ok(
        {
            "prepare_token": "prep-2",
            "turnstile": {"required": True, "dx": "AAAA"},
            "proofofwork": {"required": False},
            "so": {"required": True, "collector_dx": "x"},
        }
    )
    http = ScriptedHttp(routes_2026(**{"/backend-api/sentinel/chat-requirements/prepare": prepare}))
    with caplog.at_level(logging.WARNING):
        open_turn(Dialect2026(http, limits()))  # type: ignore[arg-type]
    assert http.body_of("/finalize") == {"prepare_token": "prep-2"}
    assert "openai-sentinel-proof-token" not in http.headers_of("/f/conversation")
    assert "turnstile token and TURNSTILE_SOLVER_URL is not set" in caplog.text
    assert "so token" in caplog.text


@pytest.mark.parametrize("code", [404, 405])
@pytest.mark.parametrize(
    "endpoint", ["sentinel/chat-requirements/prepare", "f/conversation/prepare"]
)
def test_2026_not_spoken_is_its_own_error(code: int, endpoint: str) -> None:
    http = ScriptedHttp(routes_2026(**{f"/backend-api/{endpoint}": status(code)}))
    with pytest.raises(DialectNotSpoken) as info:
        open_turn(Dialect2026(http, limits()))  # type: ignore[arg-type]
    assert info.value.status == 502 and info.value.backend_status == code
    assert "BACKEND_DIALECT" in info.value.message


def test_2026_refusals_are_classified() -> None:
    http = ScriptedHttp(
        routes_2026(**{"/backend-api/sentinel/chat-requirements/finalize": status(500)})
    )
    with pytest.raises(UpstreamError) as info:
        open_turn(Dialect2026(http, limits()))  # type: ignore[arg-type]
    assert not isinstance(info.value, DialectNotSpoken)
    assert "finalize" in info.value.message
    http = ScriptedHttp(
        routes_2026(**{"/backend-api/sentinel/chat-requirements/prepare": ok({"persona": "x"})})
    )
    with pytest.raises(UpstreamError, match="no prepare_token"):
        open_turn(Dialect2026(http, limits()))  # type: ignore[arg-type]
    http = ScriptedHttp(routes_2026(**{"/backend-api/f/conversation": status(403)}))
    with pytest.raises(Chat2ApiError) as refused:
        open_turn(Dialect2026(http, limits()))  # type: ignore[arg-type]
    assert refused.value.status == 403


def test_2026_conversation_only_skips_the_sentinel_and_a_null_conduit_is_empty() -> None:
    http = ScriptedHttp(
        routes_2026(**{"/backend-api/f/conversation/prepare": ok({"conduit_token": None})})
    )
    open_turn(Dialect2026(http, limits(), conversation_only=True))  # type: ignore[arg-type]
    assert http.paths() == [
        "/",
        "/backend-api/f/conversation/prepare",
        "/backend-api/f/conversation",
    ]
    assert http.headers_of("/f/conversation")["x-conduit-token"] == ""


def test_2026_build_is_learnt_once_per_upstream_and_optional() -> None:
    http = ScriptedHttp(routes_2026(**{"/": status(403)}))
    dialect = Dialect2026(http, limits())  # type: ignore[arg-type]
    open_turn(dialect)
    open_turn(dialect)
    assert http.paths().count("/") == 1
    last = [c for c in http.calls if c.url.endswith("/f/conversation")][-1]
    assert "oai-client-version" not in last.headers


def test_2026_pow_algorithm_setting_overrides_the_hash() -> None:
    http = ScriptedHttp(routes_2026())
    open_turn(Dialect2026(http, limits(pow_algorithm="sha3")))  # type: ignore[arg-type]
    answer = proof_answer(http.body_of("/finalize")["proofofwork"], suffix=True)
    assert pow.verify(answer, SEED, EASY, algorithm="sha3")


def test_2026_resume_call_and_its_refusals() -> None:
    resumed = FakeStream(data=b"data: {}\n\n")
    http = ScriptedHttp(routes_2026(**{"/backend-api/f/conversation/resume": resumed}))
    turn = open_turn(Dialect2026(http, limits()))  # type: ignore[arg-type]
    assert turn.resumer is not None
    stream: Any = asyncio.run(turn.resumer(conversation_id="c-1", offset=7, token="rt-1"))
    assert stream is resumed
    assert http.body_of("/resume") == {"conversation_id": "c-1", "offset": 7}
    h = http.headers_of("/resume")
    assert h["x-conduit-token"] == "rt-1"
    assert h["x-oai-turn-trace-id"] == http.headers_of("/f/conversation")["x-oai-turn-trace-id"]
    assert h["x-openai-target-path"] == "/backend-api/f/conversation/resume"

    for code, kind in [(404, ResumeRefused), (401, ResumeRefused), (502, UpstreamError)]:
        http.routes["/backend-api/f/conversation/resume"] = status(code)
        with pytest.raises(Chat2ApiError) as info:
            asyncio.run(turn.resumer(conversation_id="c-1", offset=7, token="rt-1"))
        assert isinstance(info.value, kind)
        assert isinstance(info.value, ResumeRefused) == (kind is ResumeRefused)


# -- classic ----------------------------------------------------------------------------------


PAGE = (
    b'<!doctype html><html data-build="prod-77aa" lang="en"><head>'
    b'<script src="https://cdn.example/assets/c/Dpl42/_/a.js"></script>'
    b'<script src="/assets/b.js" defer></script></head></html>'
)


def classic_routes() -> dict[str, Answer]:
    return {
        "/": HttpAnswer(status=200, headers={"content-type": "text/html"}, body=PAGE),
        "/backend-api/sentinel/chat-requirements": ok(
            {"token": "req-c", "proofofwork": {"required": True, "seed": SEED, "difficulty": EASY}}
        ),
        "/backend-api/conversation": FakeStream(),
    }


@pytest.mark.parametrize("algorithm", [None, "sha3", "fnv1a"])
def test_classic_turn_with_either_hash(algorithm: pow.Algorithm | None) -> None:
    http = ScriptedHttp(classic_routes())
    turn = open_turn(ClassicDialect(http, limits(pow_algorithm=algorithm)))  # type: ignore[arg-type]
    assert turn.wire == "classic" and turn.resumer is None
    assert http.paths() == [
        "/",
        "/backend-api/sentinel/chat-requirements",
        "/backend-api/conversation",
    ]
    proof = http.headers_of("/conversation")["openai-sentinel-proof-token"]
    answer = proof_answer(proof, suffix=False)
    assert pow.verify(answer, SEED, EASY, algorithm=algorithm or "sha3")
    # The page's script and its deployment id (docs/site-page.md), in both tokens.
    config = json.loads(base64.b64decode(answer))
    p = http.body_of("/chat-requirements")["p"]
    asked = json.loads(base64.b64decode(p[len(pow.REQUIREMENTS_PREFIX) :]))
    for c in (config, asked):
        assert c[5] in ("https://cdn.example/assets/c/Dpl42/_/a.js", ctx().origin + "/assets/b.js")
        assert c[6] == "c/Dpl42/_"
    assert http.body_of("/conversation")["wire"] == "classic"


# -- auto -------------------------------------------------------------------------------------


class FakeDialect:
    def __init__(self, name: str, error: Exception | None = None) -> None:
        self.name = name
        self.error = error
        self.origins: list[str] = []

    async def open_conversation(
        self, ctx: TurnContext, bodies: TurnBodies, rng: random.Random
    ) -> Turn:
        self.origins.append(ctx.origin)
        if self.error is not None:
            raise self.error
        return Turn(stream=FakeStream(), wire="classic" if self.name == "classic" else "2026")  # type: ignore[arg-type]


def test_auto_falls_back_per_upstream_and_remembers() -> None:
    newer = FakeDialect("2026", DialectNotSpoken("2026", "chat-requirements/prepare", 404))
    older = FakeDialect("classic")
    auto = AutoDialect(newer, older)
    a, b = ctx("https://a.example"), ctx("https://b.example")
    assert open_turn(auto, a).wire == "classic"
    assert open_turn(auto, a).wire == "classic"
    assert newer.origins == ["https://a.example"]  # asked once
    assert auto.dialect_for("https://a.example") is older
    assert auto.dialect_for("https://b.example") is None
    newer.error = None
    assert open_turn(auto, b).wire == "2026"
    assert auto.dialect_for("https://b.example") is newer
    assert open_turn(auto, a).wire == "classic"  # a stays classic


def test_auto_does_not_fall_back_on_other_errors() -> None:
    newer = FakeDialect("2026", NotFound("ChatGPT: Can't load conversation", code=None))
    older = FakeDialect("classic")
    auto = AutoDialect(newer, older)
    with pytest.raises(NotFound):
        open_turn(auto)
    assert older.origins == [] and auto.dialect_for(ctx().origin) is None


# -- the setting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "kind", "algorithm"),
    [
        ({}, ClassicDialect, "sha3"),
        ({"BACKEND_DIALECT": "2026"}, Dialect2026, "fnv1a"),
        ({"BACKEND_DIALECT": "2026", "POW_ALGORITHM": "sha3"}, Dialect2026, "sha3"),
        ({"BACKEND_DIALECT": "classic", "POW_ALGORITHM": "fnv1a"}, ClassicDialect, "fnv1a"),
        ({"BACKEND_DIALECT": "auto"}, AutoDialect, None),
    ],
)
def test_backend_dialect_setting(env: dict[str, str], kind: type, algorithm: str | None) -> None:
    dialect = make_dialect(load_settings(None, env), None)  # type: ignore[arg-type]
    assert isinstance(dialect, kind)
    if isinstance(dialect, AutoDialect):
        assert isinstance(dialect.newer, Dialect2026) and isinstance(dialect.older, ClassicDialect)
    else:
        assert dialect.algorithm == algorithm  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "env",
    [{"BACKEND_DIALECT": "2025"}, {"POW_ALGORITHM": "md5"}, {"RESUME_ATTEMPTS": "-1"}],
)
def test_bad_dialect_settings_stop_start_up(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        load_settings(None, env)
