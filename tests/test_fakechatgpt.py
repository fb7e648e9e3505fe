"""The backend emulator refuses what the real backend refuses and streams what it streams.

The proof-of-work solver here is a tiny independent one (not `pow/`), written from
docs/sentinel.md.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fakechatgpt import site
from tests.fakechatgpt.deltas import DeltaDecoder
from tests.fakechatgpt.harness import (
    Emulator,
    EmulatorFactory,
    add_refresh_tokens,
    advance_clock,
    expected_answer,
    expected_reasoning,
    fake_state,
    mint_access_token,
    next_plan,
    received,
    reset,
)

FIXTURES = Path("/work/shared/fixtures/chatgpt")
UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/136.0 Safari/537.36"
)


# ---------------------------------------------------------------- independent solver


def _config(n: int, nonce: int) -> list[Any]:
    # Elements 5 and 6 as the emulator's home page shows them (its site.py).
    build = site.DPL if n == 18 else site.BUILD
    base: list[Any] = [
        3000, "Mon Jan 05 2026 10:00:00 GMT-0500 (Eastern Standard Time)", 4294705152, nonce, UA,
        site.SCRIPTS[-1], build, "en-US", "en-US,en", nonce >> 1,
        "webdriver\u2212false", "location", "window", 1234.5, str(uuid.UUID(int=7)), "", 8, 1.7e12,
    ]  # fmt: skip
    return base + [0] * (n - len(base))


def _b64(config: list[Any]) -> str:
    raw = json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.b64encode(raw).decode()


def _fnv(text: str) -> str:
    h = 0x811C9DC5
    for ch in text:
        h = ((h ^ ord(ch)) * 0x01000193) % 2**32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) % 2**32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) % 2**32
    h ^= h >> 16
    return "%08x" % h


def _sha3_ok(seed: str, diff: str, b64: str) -> bool:
    digest = hashlib.sha3_512((seed + b64).encode()).digest()
    return digest[: len(diff) // 2].hex() < diff


def _fnv_ok(seed: str, diff: str, b64: str) -> bool:
    return _fnv(seed + b64)[: len(diff)] <= diff


def solve(seed: str, diff: str, *, dialect: str = "classic", want: bool = True) -> str:
    """A proof token whose check gives `want` (False: a deliberately wrong proof)."""
    ok = _sha3_ok if dialect == "classic" else _fnv_ok
    for nonce in range(200_000):
        b64 = _b64(_config(18 if dialect == "classic" else 25, nonce))
        if ok(seed, diff, b64) == want:
            return "gAAAAAB" + b64 + ("" if dialect == "classic" else "~S")
    raise AssertionError("no nonce found")


def requirements_p(dialect: str = "classic") -> str:
    if dialect == "classic":
        return "gAAAAAC" + _b64(_config(18, 1))
    return "gAAAAAC" + _b64(_config(25, 1)) + "~S"


# ---------------------------------------------------------------- client


class Client:
    def __init__(self, emulator: Emulator, token: str | None = None) -> None:
        self.host = urlsplit(emulator.url).hostname or "127.0.0.1"
        self.port = emulator.port
        self.token = token if token is not None else mint_access_token()
        self.device = str(uuid.uuid4())

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {
            "user-agent": UA,
            "oai-device-id": self.device,
            "content-type": "application/json",
            "accept": "*/*",
        }
        if self.token:
            h["authorization"] = f"Bearer {self.token}"
        h.update(extra or {})
        return h

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        data = (
            body
            if isinstance(body, bytes)
            else (None if body is None else json.dumps(body).encode())
        )
        try:
            conn.request(method, path, body=data, headers=self.headers(headers))
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload

    def post_json(
        self, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        status, _, payload = self.request("POST", path, body, headers)
        return status, json.loads(payload)

    def requirements(self, base: str = "/backend-api") -> dict[str, Any]:
        status, body = self.post_json(f"{base}/sentinel/chat-requirements", {"p": requirements_p()})
        assert status == 200, body
        return dict(body)

    def converse_headers(self, req: dict[str, Any], proof: str | None) -> dict[str, str]:
        h = {
            "accept": "text/event-stream",
            "openai-sentinel-chat-requirements-token": req["token"],
        }
        if proof is not None:
            h["openai-sentinel-proof-token"] = proof
        return h

    def converse(
        self, body: dict[str, Any] | None = None, *, base: str = "/backend-api"
    ) -> tuple[int, dict[str, str], bytes]:
        req = self.requirements(base)
        pow_ = req["proofofwork"]
        proof = solve(pow_["seed"], pow_["difficulty"])
        return self.request(
            "POST", f"{base}/conversation", body or conv_body(), self.converse_headers(req, proof)
        )


def conv_body(
    prompt: str = "Hello, emulator!", model: str = "gpt-4o", **extra: Any
) -> dict[str, Any]:
    return {
        "action": "next",
        "messages": [
            {
                "id": str(uuid.uuid4()),
                "author": {"role": "user"},
                "content": {"content_type": "text", "parts": [prompt]},
                "metadata": {},
            }
        ],
        "parent_message_id": "client-created-root",
        "model": model,
        "supported_encodings": ["v1"],
        "history_and_training_disabled": False,
        "conversation_mode": {"kind": "primary_assistant"},
        "timezone_offset_min": 0,
        "timezone": "UTC",
        **extra,
    }


def sse_events(raw: bytes) -> list[tuple[str, str]]:
    """(event name, data) for every dispatched event (WHATWG rules, enough for our streams)."""
    out = []
    for block in raw.decode("utf-8").split("\n\n"):
        name, data = "", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(" ") else value)
        text = "\n".join(data)
        if text.strip():
            out.append((name, text))
    return out


def final_messages(raw: bytes) -> list[dict[str, Any]]:
    decoder = DeltaDecoder()
    for name, data in sse_events(raw):
        if name == "delta":
            decoder.feed(json.loads(data))
    return [decoder.docs[c]["message"] for c in sorted(decoder.docs)]


@pytest.fixture(scope="module")
def emulator_options() -> dict[str, Any]:
    return {"refresh_tokens": "rt-one,rt-two"}


@pytest.fixture
def client(emulator: Emulator) -> Client:
    return Client(emulator)  # tests/conftest.py has reset the emulator


# ---------------------------------------------------------------- valid flows


def test_classic_flow_streams_the_expected_answer(client: Client, emulator: Emulator) -> None:
    status, headers, raw = client.converse(conv_body("Grüß dich 👋"))
    assert status == 200, raw
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["transfer-encoding"] == "chunked"
    assert raw.startswith(b'event: delta_encoding\ndata: "v1"\n\n')
    assert raw.endswith(b"data: \n\ndata: [DONE]\n\n")
    assert b"\n: ping - " in raw and b" \n\n" in raw  # comments and padded data lines
    events = sse_events(raw)
    types = [json.loads(d).get("type") for n, d in events if n == "" and d.startswith("{")]
    for t in (
        "resume_conversation_token",
        "input_message",
        "message_marker",
        "title_generation",
        "server_ste_metadata",
        "message_stream_complete",
        "conversation_detail_metadata",
    ):
        assert t in types
    ops = {json.loads(d).get("o") for n, d in events if n == "delta"}
    assert {"add", "append", "replace", "remove", "truncate", "patch", None} <= ops
    messages = final_messages(raw)
    answer = messages[-1]
    assert answer["author"]["role"] == "assistant"
    assert answer["content"]["parts"] == [expected_answer("Grüß dich 👋", "gpt-4o")]
    assert answer["status"] == "finished_successfully" and answer["end_turn"] is True
    assert answer["metadata"]["finish_details"]["type"] == "stop"
    # A list was extended, an item pushed, then the list truncated back to one item.
    assert [d["slug"] for d in answer["metadata"]["model_switcher_deny"]] == ["o1"]
    text_deltas = [d for n, d in events if n == "delta" and '"v": "' in d]
    assert len(text_deltas) >= 20


@pytest.mark.parametrize("model", ["o3-mini-high", "o1", "gpt-5-2-thinking", "o3"])
def test_reasoning_models(client: Client, model: str) -> None:
    status, _, raw = client.converse(conv_body("Why?", model))
    assert status == 200
    messages = final_messages(raw)
    reasoning = expected_reasoning("Why?", model)
    assert reasoning
    if model.startswith("o1") or model.startswith("o3-mini"):
        tool = next(m for m in messages if m["author"]["role"] == "tool")
        assert tool["author"]["name"] == "a8km123"
        assert tool["content"]["parts"] == [reasoning]
        assert tool["metadata"]["finished_text"] == "Thought for 2 seconds"
    else:
        thoughts = next(m for m in messages if m["content"]["content_type"] == "thoughts")
        assert "".join(t["content"] for t in thoughts["content"]["thoughts"]) == reasoning
        assert any(m["content"]["content_type"] == "reasoning_recap" for m in messages)
        assert messages[-1]["channel"] == "final"
    assert messages[-1]["content"]["parts"] == [expected_answer("Why?", model)]


def test_legacy_format_when_no_encodings(client: Client) -> None:
    status, _, raw = client.converse(conv_body("old style", supported_encodings=[]))
    assert status == 200
    assert b"event:" not in raw
    events = [json.loads(d) for _, d in sse_events(raw) if d != "[DONE]"]
    full = [e for e in events if e.get("message")]
    assert full[-1]["message"]["content"]["parts"] == [expected_answer("old style", "gpt-4o")]
    assert any("moderation_response" in e for e in events)
    assert raw.endswith(b"data: [DONE]\n\n")


def test_replay_is_byte_for_byte(client: Client, emulator: Emulator) -> None:
    capture = FIXTURES / "delta_v1/fira_paste_gpt-5-2_famous-people_A_2026-01.sse"
    next_plan(emulator.url, replay=str(capture))
    status, _, raw = client.converse()
    assert status == 200
    assert raw == capture.read_bytes()


def test_replay_flag(emulator_factory: EmulatorFactory) -> None:
    capture = FIXTURES / "delta_v1/fira_paste_gpt-5-2_famous-people_A_2026-01.sse"
    status, _, raw = Client(emulator_factory(replay=str(capture))).converse()
    assert status == 200 and raw == capture.read_bytes()


def test_anon_flow(emulator: Emulator) -> None:
    reset(emulator.url)
    anon = Client(emulator, token="")
    req = anon.requirements("/backend-anon")
    assert req["persona"] == "chatgpt-noauth"
    status, _, raw = anon.converse(base="/backend-anon")
    assert status == 200 and raw.endswith(b"[DONE]\n\n")


# ---------------------------------------------------------------- refusals


def test_wrong_proof_is_403(client: Client) -> None:
    req = client.requirements()
    pw = req["proofofwork"]
    bad = solve(pw["seed"], pw["difficulty"], want=False)
    status, _, raw = client.request(
        "POST", "/backend-api/conversation", conv_body(), client.converse_headers(req, bad)
    )
    assert status == 403 and "detail" in json.loads(raw)
    status, _, _ = client.request(
        "POST", "/backend-api/conversation", conv_body(), client.converse_headers(req, None)
    )
    assert status == 403


def test_proof_for_another_seed_is_403(client: Client) -> None:
    a, b = client.requirements(), client.requirements()
    diff = a["proofofwork"]["difficulty"]
    for nonce in range(100_000):
        b64 = _b64(_config(18, nonce))
        if _sha3_ok(a["proofofwork"]["seed"], diff, b64) and not _sha3_ok(
            b["proofofwork"]["seed"], diff, b64
        ):
            break
    status, _, _ = client.request(
        "POST",
        "/backend-api/conversation",
        conv_body(),
        client.converse_headers(b, "gAAAAAB" + b64),
    )
    assert status == 403


def test_reused_and_expired_requirements_tokens_are_403(client: Client, emulator: Emulator) -> None:
    req = client.requirements()
    proof = solve(req["proofofwork"]["seed"], req["proofofwork"]["difficulty"])
    hdrs = client.converse_headers(req, proof)
    assert client.request("POST", "/backend-api/conversation", conv_body(), hdrs)[0] == 200
    status, _, raw = client.request("POST", "/backend-api/conversation", conv_body(), hdrs)
    assert status == 403 and b"already been used" in raw
    req = client.requirements()
    proof = solve(req["proofofwork"]["seed"], req["proofofwork"]["difficulty"])
    advance_clock(emulator.url, 600)
    hdrs = client.converse_headers(req, proof)
    status, _, raw = client.request("POST", "/backend-api/conversation", conv_body(), hdrs)
    assert status == 403 and b"expired" in raw


def test_bad_requirements_p_is_403(client: Client) -> None:
    for p in ["nope", "gAAAAAC!!!", "gAAAAAC" + _b64([1, 2, 3])]:
        status, body = client.post_json("/backend-api/sentinel/chat-requirements", {"p": p})
        assert status == 403 and "detail" in body


@pytest.mark.parametrize("dialect", ["classic", "2026"])
@pytest.mark.parametrize(
    ("index", "value"),
    [(5, "https://chatgpt.com/backend-api/sentinel/sdk.js?old"), (6, None), (6, "prod-0")],
)
def test_config_must_carry_the_home_pages_script_and_build(
    client: Client, dialect: str, index: int, value: Any
) -> None:
    """Element 5 a script of the page, 6 its dpl (classic) or data-build (2026)."""
    config = _config(18 if dialect == "classic" else 25, 1)
    config[index] = value
    path = "/backend-api/sentinel/chat-requirements"
    if dialect == "2026":
        path += "/prepare"
    status, body = client.post_json(
        path, {"p": "gAAAAAC" + _b64(config) + ("~S" if dialect == "2026" else "")}
    )
    assert status == 403 and f"config[{index}]" in body["detail"]
    # The page itself names them.
    status, _, page = client.request("GET", "/")
    html = page.decode()
    assert status == 200 and f'data-build="{site.BUILD}"' in html
    assert all(f'src="{src}"' in html for src in site.SCRIPTS)
    assert site.DPL in site.SCRIPTS[0]


@pytest.mark.parametrize(
    "token, detail_word",
    [
        (mint_access_token(exp_in=-10), "expired"),
        ("not-a-jwt", "parse"),
        ("a.b.c", "parse"),
    ],
    ids=["expired", "not-a-jwt", "three-parts"],  # stable: the minted token is random
)
def test_bad_bearer_is_401(emulator: Emulator, token: str, detail_word: str) -> None:
    status, body = Client(emulator, token).post_json(
        "/backend-api/sentinel/chat-requirements", {"p": requirements_p()}
    )
    assert status == 401 and detail_word in body["detail"]


def test_missing_bearer_is_401(emulator: Emulator) -> None:
    status, _, _ = Client(emulator, token="").request("GET", "/backend-api/models")
    assert status == 401


@pytest.mark.parametrize(
    "body, loc",
    [
        ({k: v for k, v in conv_body().items() if k != "model"}, ["body", "model"]),
        (conv_body(messages="hi"), ["body", "messages"]),
        (conv_body(action="variant"), ["body", "action"]),
    ],
)
def test_malformed_body_is_422(client: Client, body: dict[str, Any], loc: list[str]) -> None:
    req = client.requirements()
    proof = solve(req["proofofwork"]["seed"], req["proofofwork"]["difficulty"])
    status, _, raw = client.request(
        "POST", "/backend-api/conversation", body, client.converse_headers(req, proof)
    )
    assert status == 422
    assert json.loads(raw)["detail"][0]["loc"] == loc
    status, _, raw = client.request(
        "POST", "/backend-api/conversation", b"action=next", client.converse_headers(req, proof)
    )
    assert status == 422 and json.loads(raw)["detail"][0]["type"] == "value_error.jsondecode"


def test_refresh_token_rotation(client: Client, emulator: Emulator) -> None:
    body = {"client_id": "app", "grant_type": "refresh_token", "refresh_token": "rt-one"}
    status, first = client.post_json("/oauth/token", body)
    assert status == 200 and first["refresh_token"] != "rt-one"
    assert first["access_token"].count(".") == 2 and first["expires_in"] > 0
    status, again = client.post_json("/oauth/token", body)
    assert status == 400 and again["error"] == "invalid_grant"
    status, _ = client.post_json("/oauth/token", dict(body, refresh_token=first["refresh_token"]))
    assert status == 200
    add_refresh_tokens(emulator.url, ["rt-added"])
    assert client.post_json("/oauth/token", dict(body, refresh_token="rt-added"))[0] == 200
    assert client.post_json("/oauth/token", dict(body, refresh_token="never"))[0] == 400
    assert fake_state(emulator.url)["refresh_calls"] == 5
    # The fresh access token is accepted.
    Client(emulator, first["access_token"]).requirements()


# ---------------------------------------------------------------- 2026 dialect


def _flow_2026(client: Client, **body: Any) -> tuple[int, bytes]:
    status, prep = client.post_json(
        "/backend-api/sentinel/chat-requirements/prepare", {"p": requirements_p("2026")}
    )
    assert status == 200, prep
    pw = prep["proofofwork"]
    proof = solve(pw["seed"], pw["difficulty"], dialect="2026")
    status, fin = client.post_json(
        "/backend-api/sentinel/chat-requirements/finalize",
        {"prepare_token": prep["prepare_token"], "proofofwork": proof},
    )
    assert status == 200 and fin["expire_after"] == 540, fin
    conduit = ""
    for _ in range(3):
        b = {k: v for k, v in conv_body(**body).items() if k != "messages"}
        status, ans = client.post_json(
            "/backend-api/f/conversation/prepare", b, {"x-conduit-token": conduit}
        )
        assert status == 200 and ans["status"] == "ok"
        conduit = ans["conduit_token"]
    hdrs = client.converse_headers(fin, proof) | {"x-conduit-token": conduit}
    status, _, raw = client.request("POST", "/backend-api/f/conversation", conv_body(**body), hdrs)
    return status, raw


def test_2026_flow_and_resume(client: Client, emulator: Emulator) -> None:
    status, raw = _flow_2026(client)
    assert status == 200, raw
    assert final_messages(raw)[-1]["content"]["parts"] == [
        expected_answer("Hello, emulator!", "gpt-4o")
    ]
    token_event = json.loads(sse_events(raw)[1][1])
    assert token_event["type"] == "resume_conversation_token" and token_event["kind"] == "conduit"
    # Offsets count dispatched events: the delta_encoding one is event 0.
    blocks = [b + b"\n\n" for b in raw.split(b"\n\n") if b]
    counted = [b for b in blocks if sse_events(b) and sse_events(b)[0][1] != "[DONE]"]
    n = 10
    rest_start = raw.index(counted[n - 1]) + len(counted[n - 1])
    body = {"conversation_id": token_event["conversation_id"], "offset": n}
    status, _, resumed = client.request(
        "POST",
        "/backend-api/f/conversation/resume",
        body,
        {"x-conduit-token": token_event["token"]},
    )
    assert status == 200 and resumed == raw[rest_start:]
    status, _, _ = client.request(
        "POST", "/backend-api/f/conversation/resume", body, {"x-conduit-token": "no-token"}
    )
    assert status == 404


def test_2026_refusals(client: Client, emulator: Emulator) -> None:
    status, body = client.post_json(
        "/backend-api/sentinel/chat-requirements/finalize", {"prepare_token": "gAAAAABnope"}
    )
    assert (status, body) == (500, {"detail": "Internal Server Error"})
    status, prep = client.post_json(
        "/backend-api/sentinel/chat-requirements/prepare", {"p": requirements_p("2026")}
    )
    pw = prep["proofofwork"]
    bad = solve(pw["seed"], pw["difficulty"], dialect="2026", want=False)
    status, _ = client.post_json(
        "/backend-api/sentinel/chat-requirements/finalize",
        {"prepare_token": prep["prepare_token"], "proofofwork": bad},
    )
    assert status == 403
    # f/conversation without a conduit token.
    good = solve(pw["seed"], pw["difficulty"], dialect="2026")
    status, fin = client.post_json(
        "/backend-api/sentinel/chat-requirements/finalize",
        {"prepare_token": prep["prepare_token"], "proofofwork": good},
    )
    assert status == 200
    hdrs = client.converse_headers(fin, good)
    status, _, _ = client.request("POST", "/backend-api/f/conversation", conv_body(), hdrs)
    assert status == 403
    next_plan(emulator.url, resume_fail=True)
    status, raw = _flow_2026(client)
    token_event = json.loads(sse_events(raw)[1][1])
    status, _, _ = client.request(
        "POST",
        "/backend-api/f/conversation/resume",
        {"conversation_id": token_event["conversation_id"], "offset": 0},
        {"x-conduit-token": token_event["token"]},
    )
    assert status == 404


# ---------------------------------------------------------------- faults and log


def test_drop_after_events(client: Client, emulator: Emulator) -> None:
    next_plan(emulator.url, drop_after_events=5)
    with pytest.raises(http.client.IncompleteRead) as info:
        client.converse()
    assert info.value.partial.count(b"\n\n") == 5
    entry = [r for r in received(emulator.url) if r["path"].endswith("/conversation")][-1]
    assert entry["events_sent"] == 5 and entry["ended"] == "dropped"


def test_stall_and_delay(client: Client, emulator: Emulator) -> None:
    next_plan(emulator.url, stall_ms=300)
    started = time.monotonic()
    assert client.converse()[0] == 200
    assert time.monotonic() - started >= 0.3
    next_plan(emulator.url, stall_after_events=3, stall_ms=200, delay_ms=1)
    started = time.monotonic()
    assert client.converse()[0] == 200
    assert time.monotonic() - started >= 0.2


def test_error_and_malformed_events(client: Client, emulator: Emulator) -> None:
    next_plan(emulator.url, error_event="Something went wrong", error_after_events=4)
    status, _, raw = client.converse()
    assert status == 200 and b"[DONE]" not in raw
    last = json.loads(sse_events(raw)[-1][1])
    assert last["message"] is None and last["error"] == "Something went wrong"
    next_plan(emulator.url, malformed_event=6)
    status, _, raw = client.converse()
    assert b'"v": "unter\n\n' in raw and raw.endswith(b"[DONE]\n\n")


@pytest.mark.parametrize(
    "preset, status, marker",
    [
        ("cloudflare", 403, b"cf_chl_opt"),
        ("unusual_activity", 403, b"Unusual activity"),
        ("rate_limit", 429, b'"clears_in":30'),
        ("server_error", 500, b"Internal"),
        ("bad_gateway", 502, b"502"),
        ("model_not_found", 404, b"model_not_found"),
        ("unauthorized", 401, b"expired"),
    ],
)
def test_presets(
    client: Client, emulator: Emulator, preset: str, status: int, marker: bytes
) -> None:
    next_plan(emulator.url, preset=preset)
    got, _, raw = client.converse()
    assert got == status and marker in raw
    assert client.converse()[0] == 200  # count defaults to 1
    next_plan(emulator.url, preset=preset, target="sentinel")
    got, _, raw = client.request("POST", "/backend-api/sentinel/chat-requirements", {"p": "x"})
    assert got == status and marker in raw


def test_unknown_plan_key_is_rejected(emulator: Emulator) -> None:
    with pytest.raises(Exception, match="400"):
        next_plan(emulator.url, stal_ms=3)


def test_moderation_plan(client: Client, emulator: Emulator) -> None:
    next_plan(emulator.url, moderation=True)
    status, _, raw = client.converse()
    events = [json.loads(d) for n, d in sse_events(raw) if n == "" and d.startswith("{")]
    mod = next(e for e in events if e.get("type") == "moderation")
    assert mod["moderation_response"]["blocked"] is True
    assert final_messages(raw)[-1]["content"]["parts"] == [""]


def test_requests_are_recorded(client: Client, emulator: Emulator) -> None:
    client.converse(conv_body("record me"))
    log = received(emulator.url)
    assert [r["path"] for r in log] == [
        "/backend-api/sentinel/chat-requirements",
        "/backend-api/conversation",
    ]
    conv = log[1]
    assert conv["headers"]["oai-device-id"] == client.device
    assert conv["headers"]["openai-sentinel-proof-token"].startswith("gAAAAAB")
    assert json.loads(conv["body"])["messages"][0]["content"]["parts"] == ["record me"]
    assert conv["completed"] is True and conv["client_disconnected"] is False
    assert conv["events_sent"] > 20


def test_client_disconnect_is_recorded(client: Client, emulator: Emulator) -> None:
    next_plan(emulator.url, delay_ms=50)
    req = client.requirements()
    proof = solve(req["proofofwork"]["seed"], req["proofofwork"]["difficulty"])
    body = json.dumps(conv_body()).encode()
    hdrs = client.headers(client.converse_headers(req, proof)) | {"content-length": str(len(body))}
    sock = socket.create_connection((client.host, client.port))
    head = "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    sock.sendall(
        f"POST /backend-api/conversation HTTP/1.1\r\nhost: x\r\n{head}\r\n".encode() + body
    )
    assert sock.recv(100).startswith(b"HTTP/1.1 200")
    time.sleep(0.2)
    sock.close()
    for _ in range(50):
        entry = received(emulator.url)[-1]
        if entry.get("client_disconnected"):
            break
        time.sleep(0.05)
    assert entry["client_disconnected"] is True and entry["completed"] is False
    assert 0 < entry["events_sent"] < 40


# ---------------------------------------------------------------- history, files, images


def test_conversation_history(client: Client, emulator: Emulator) -> None:
    _, _, raw = client.converse(conv_body("keep this"))
    cid = json.loads(sse_events(raw)[1][1])["conversation_id"]
    status, listing = client.request("GET", "/backend-api/conversations?offset=0&limit=10")[::2]
    assert status == 200 and [i["id"] for i in json.loads(listing)["items"]] == [cid]
    status, _, conv = client.request("GET", f"/backend-api/conversation/{cid}")
    texts = [
        n["message"]["content"].get("parts")
        for n in json.loads(conv)["mapping"].values()
        if n["message"]
    ]
    assert [expected_answer("keep this", "gpt-4o")] in texts
    status, _, _ = client.request(
        "PATCH", f"/backend-api/conversation/{cid}", {"is_visible": False}
    )
    assert status == 200
    assert client.request("GET", f"/backend-api/conversation/{cid}")[0] == 404
    _, _, raw = client.converse(conv_body("temporary", history_and_training_disabled=True))
    assert json.loads(client.request("GET", "/backend-api/conversations")[2])["items"] == []


def test_file_upload_and_download(client: Client) -> None:
    data = b"\x89PNG fake bytes"
    status, created = client.post_json(
        "/backend-api/files",
        {"file_name": "a.png", "file_size": len(data), "use_case": "multimodal",
         "timezone_offset_min": 0, "reset_rate_limits": False},
    )  # fmt: skip
    assert status == 200
    upload = urlsplit(created["upload_url"])
    path = f"{upload.path}?{upload.query}"
    assert client.request("PUT", path, data, {"content-type": "image/png"})[0] == 400
    status, _, _ = client.request(
        "PUT", path, data, {"content-type": "image/png", "x-ms-blob-type": "BlockBlob"}
    )
    assert status == 201
    fid = created["file_id"]
    status, done = client.post_json(f"/backend-api/files/{fid}/uploaded", {})
    assert status == 200 and done["status"] == "success"
    info = json.loads(client.request("GET", f"/backend-api/files/{fid}")[2])
    assert info["retrieval_index_status"] == "success"
    for path in (
        f"/backend-api/files/{fid}/download",
        f"/backend-api/conversation/c/attachment/{fid}/download",
    ):
        dl = json.loads(client.request("GET", path)[2])
        url = urlsplit(dl["download_url"])
        status, headers, got = client.request("GET", f"{url.path}?{url.query}")
        assert (status, headers["content-type"], got) == (200, "image/png", data)
    dl = json.loads(
        client.request(
            "GET",
            "/backend-api/conversation/c/interpreter/download?message_id=m&sandbox_path=/mnt/data/x.txt",
        )[2]
    )
    assert dl["status"] == "success"


def test_image_generation(client: Client, emulator: Emulator) -> None:
    status, _, raw = client.converse(conv_body("draw a cat", system_hints=["picture_v2"]))
    assert status == 200
    image = final_messages(raw)[-1]
    assert image["content"]["content_type"] == "multimodal_text"
    pointers = [p["asset_pointer"] for p in image["content"]["parts"]]
    assert pointers[0].startswith("sediment://file_") and pointers[1].startswith(
        "file-service://file-"
    )
    for pointer in pointers:
        fid = pointer.split("://")[1]
        dl = json.loads(client.request("GET", f"/backend-api/files/{fid}/download")[2])
        url = urlsplit(dl["download_url"])
        status, headers, png = client.request("GET", f"{url.path}?{url.query}")
        assert status == 200 and png.startswith(b"\x89PNG\r\n\x1a\n")


def test_async_image(client: Client, emulator: Emulator) -> None:
    next_plan(emulator.url, async_image=True, async_ready_ms=100)
    status, _, raw = client.converse(conv_body("draw a dog", system_hints=["picture_v2"]))
    events = [json.loads(d) for n, d in sse_events(raw) if n == "" and d.startswith("{")]
    assert any(e.get("type") == "conversation_async_status" for e in events)
    cid = events[0]["conversation_id"]
    time.sleep(0.15)
    conv = json.loads(client.request("GET", f"/backend-api/conversation/{cid}")[2])
    kinds = [
        n["message"]["content"]["content_type"] for n in conv["mapping"].values() if n["message"]
    ]
    assert kinds[-1] == "multimodal_text"


def test_gizmo_is_recorded(client: Client, emulator: Emulator) -> None:
    body = conv_body(conversation_mode={"kind": "gizmo_interaction", "gizmo_id": "g-abc123"})
    assert client.converse(body)[0] == 200
    assert received(emulator.url)[-1]["gizmo_id"] == "g-abc123"


def test_account_endpoints(client: Client) -> None:
    for path in (
        "/backend-api/models",
        "/backend-api/me",
        "/backend-api/accounts/check/v4-2023-04-27",
    ):
        status, _, raw = client.request("GET", path)
        assert status == 200 and json.loads(raw)
    assert client.request("GET", "/_fake/image.png")[2].startswith(b"\x89PNG")


def test_200_concurrent_streams(emulator: Emulator) -> None:
    reset(emulator.url)
    client = Client(emulator)

    def one(i: int) -> bool:
        status, _, raw = client.converse(conv_body(f"prompt {i}"))
        return status == 200 and raw.endswith(b"data: [DONE]\n\n")

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(one, range(200)))
    assert all(results)
    assert time.monotonic() - started < 30


def test_dialect_and_format_flags(emulator_factory: EmulatorFactory) -> None:
    client = Client(emulator_factory("--dialect", "classic", "--format", "legacy"))
    status, _ = client.post_json(
        "/backend-api/sentinel/chat-requirements/prepare", {"p": requirements_p("2026")}
    )
    assert status == 404
    status, _, raw = client.converse()
    assert status == 200 and b"event: delta" not in raw
    client = Client(emulator_factory(dialect="2026"))
    status, _ = client.post_json("/backend-api/sentinel/chat-requirements", {"p": requirements_p()})
    assert status == 404
    assert _flow_2026(client)[0] == 200


def test_pow_difficulty_flag(emulator_factory: EmulatorFactory) -> None:
    client = Client(emulator_factory(pow_difficulty="00ffff"))
    assert client.requirements()["proofofwork"]["difficulty"] == "00ffff"
