"""``/v1/responses`` end to end: the official openai SDK (``responses.create`` and
``responses.stream``, whose accumulator checks the event order) through a running
mitmdump on both listeners, answered by the emulator's Codex backend; storage and
``previous_response_id``; the Codex backend's failures as clients see them; the web
conversation fallback."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.fakechatgpt.answers import expected_answer, expected_reasoning
from tests.fakechatgpt.harness import (
    CODEX_FIXTURES,
    Emulator,
    codex_plan,
    expected_codex_answer,
    expected_codex_tool_answer,
    mint_access_token,
    received,
    token_account_id,
)
from tests.support.clients import client_env, reverse_env, run_client
from tests.support.mitm import Mitm, MitmFactory
from tests.support.redis import run_redis

MODES = ["proxy", "reverse"]
MODEL = "gpt-5.5"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
ASK_WEATHER = 'What is the weather? call get_weather({"city": "Paris"})'


@pytest.fixture(scope="module")
def chat2api_options() -> dict[str, Any]:
    """The module's chat2api (conftest ``mitm``): short timeouts for the fault tests."""
    return {"env": {"TIMEOUT_IDLE": "3", "TIMEOUT_FIRST_BYTE": "4"}}


def codex_calls(emulator: Emulator) -> list[dict[str, Any]]:
    """The Codex-backend calls the emulator got, bodies parsed."""
    calls = []
    for r in received(emulator.url):
        if r.get("path", "").startswith("/backend-api/codex/responses"):
            calls.append({**r, "body": json.loads(r["body"]) if r["body"] else None})
    return calls


def sdk(env: dict[str, str], body: str, **spec: Any) -> dict[str, Any]:
    """Run ``body`` (Python using ``client`` and ``spec``) in the clients' venv."""
    script = (
        "import os, openai\n"
        "spec = json.loads(os.environ['C2A_SPEC'])\n"
        "client = openai.OpenAI(max_retries=0, timeout=60)\n"
        "out = {}\n"
        "try:\n"
        + "".join(f"    {line}\n" for line in body.strip().splitlines())
        + "except Exception as e:\n"
        "    out['error'] = describe_error(e)\n"
        "emit(out)\n"
    )
    (result,) = run_client(script, {**env, "C2A_SPEC": json.dumps(spec)}, timeout=90)
    assert isinstance(result, dict)
    return result


@pytest.mark.parametrize("mode", MODES)
def test_create_and_stream_plain_text(mitm: Mitm, token: str, mode: str) -> None:
    out = sdk(
        client_env(mitm, mode, token),
        """
r = client.responses.create(model=spec['model'], input='hello there')
out['text'], out['status'], out['usage'] = r.output_text, r.status, r.usage.model_dump()
out['id'] = r.id
with client.responses.stream(model=spec['model'], input='hello there') as s:
    out['kinds'] = [e.type for e in s]
    final = s.get_final_response()
out['stream_text'] = final.output_text
""",
        model=MODEL,
    )
    assert "error" not in out, out
    expected = expected_codex_answer("hello there", MODEL)
    assert out["text"] == expected and out["stream_text"] == expected
    assert out["status"] == "completed" and out["id"].startswith("resp_")
    usage = out["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert isinstance(usage["input_tokens_details"]["cached_tokens"], int)
    assert out["kinds"][0] == "response.created" and out["kinds"][-1] == "response.completed"


TOOL_LOOP = """
tools = [spec['tool']]
history = [{'role': 'user', 'content': spec['prompt']}]
with client.responses.stream(model=spec['model'], input=history, tools=tools,
                             reasoning={'effort': 'low', 'summary': 'auto'}) as s:
    kinds = [e.type for e in s]
    first = s.get_final_response()
calls = [o for o in first.output if o.type == 'function_call']
out['kinds'] = kinds
out['calls'] = [(c.name, json.loads(c.arguments)) for c in calls]
outputs = [{'type': 'function_call_output', 'call_id': c.call_id,
            'output': json.dumps({'city': json.loads(c.arguments)['city'], 'temp_c': 21})}
           for c in calls]
out['outputs'] = [o['output'] for o in outputs]
# Stateless, as Codex CLI does it: the whole history again, items included.
history += [o.model_dump(exclude_none=True) for o in first.output] + outputs
second = client.responses.create(model=spec['model'], input=history, tools=tools, store=False)
out['stateless'] = second.output_text
# Stateful: only the tool outputs, after previous_response_id.
third = client.responses.create(model=spec['model'], previous_response_id=first.id,
                                input=outputs, tools=tools)
out['chained'] = third.output_text
with client.responses.stream(model=spec['model'], previous_response_id=first.id,
                             input=outputs, tools=tools) as s:
    out['chained_stream'] = s.get_final_response().output_text
"""


@pytest.mark.parametrize("mode", MODES)
def test_function_tool_loop_stateless_and_chained(
    mitm: Mitm, emulator: Emulator, token: str, mode: str
) -> None:
    out = sdk(
        client_env(mitm, mode, token), TOOL_LOOP, model=MODEL, tool=WEATHER, prompt=ASK_WEATHER
    )
    assert "error" not in out, out
    assert out["calls"] == [["get_weather", {"city": "Paris"}]]
    assert "response.function_call_arguments.delta" in out["kinds"]
    assert "response.reasoning_summary_text.delta" in out["kinds"]
    final = expected_codex_tool_answer(out["outputs"], MODEL)
    assert out["stateless"] == final
    assert out["chained"] == final and out["chained_stream"] == final
    # What reached the backend: no item ids, the history before the outputs.
    bodies = [c["body"] for c in codex_calls(emulator)]
    assert len(bodies) == 4
    assert all("id" not in item for b in bodies for item in b["input"])

    # previous_response_id brings back the same history the stateless client sent.
    def shape(body: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(i.get("type"), i.get("role"), i.get("call_id")) for i in body["input"]]

    assert shape(bodies[2]) == shape(bodies[1]) == shape(bodies[3])
    kinds = [i.get("type", "message") for i in bodies[2]["input"]]
    assert kinds[0] == "message" and kinds[-2:] == ["function_call", "function_call_output"]
    assert all(b["store"] is False and b["stream"] is True and b["instructions"] for b in bodies)
    # A chain of responses keeps one prompt cache key (and session id): the first's.
    keys = [b["prompt_cache_key"] for b in bodies]
    assert keys[0] == keys[2] == keys[3] != keys[1]


@pytest.mark.parametrize("mode", MODES)
def test_stored_responses_retrieve_delete_and_ownership(mitm: Mitm, token: str, mode: str) -> None:
    other = mint_access_token(exp_in=3600)
    first = sdk(
        client_env(mitm, mode, token),
        """
r = client.responses.create(model=spec['model'], input='remember me', metadata={'k': 'v'})
out['id'], out['text'] = r.id, r.output_text
got = client.responses.retrieve(r.id)
out['got'] = [got.id, got.output_text, got.metadata]
""",
        model=MODEL,
    )
    assert "error" not in first, first
    assert first["got"] == [first["id"], first["text"], {"k": "v"}]
    stranger = sdk(
        client_env(mitm, mode, other),
        """
try:
    client.responses.retrieve(spec['id'])
except Exception as e:
    out['retrieve'] = describe_error(e)
try:
    client.responses.create(model=spec['model'], input='go on', previous_response_id=spec['id'])
except Exception as e:
    out['chain'] = describe_error(e)
    out['code'] = getattr(e, 'code', None)
""",
        model=MODEL,
        id=first["id"],
    )
    assert stranger["retrieve"]["status"] == 404
    assert stranger["chain"]["status"] == 404 and stranger["code"] == "previous_response_not_found"
    owner = sdk(
        client_env(mitm, mode, token),
        """
out['deleted'] = client.responses.delete(spec['id']) is None
try:
    client.responses.retrieve(spec['id'])
except Exception as e:
    out['after'] = describe_error(e)
""",
        id=first["id"],
    )
    assert owner["deleted"] and owner["after"]["status"] == 404


def test_usage_limit_limits_the_account_and_answers_429(
    mitm: Mitm, emulator: Emulator, token: str
) -> None:
    codex_plan(emulator.url, preset="usage_limit", resets_in_seconds=1800)
    out = sdk(
        reverse_env(mitm, token),
        """
for name in ('first', 'second'):
    try:
        client.responses.create(model=spec['model'], input='hi')
    except openai.RateLimitError as e:
        out[name] = [e.status_code, e.response.headers.get('retry-after'), str(e)[:200]]
""",
        model=MODEL,
    )
    assert out["first"][0] == 429 and 1700 <= int(out["first"][1]) <= 1800
    assert out["second"][0] == 429 and int(out["second"][1]) > 1000
    assert len(codex_calls(emulator)) == 1  # the limited account is not asked again


def test_plan_refusal_falls_back_to_the_web_conversation_and_is_remembered(
    mitm: Mitm, emulator: Emulator, token: str
) -> None:
    codex_plan(emulator.url, preset="model_not_supported")
    out = sdk(
        reverse_env(mitm, token),
        """
out['a'] = client.responses.create(model=spec['model'], input='hello web').output_text
with client.responses.stream(model=spec['model'], input='hello web') as s:
    out['b'] = s.get_final_response().output_text
r = client.responses.create(model=spec['model'], input='Weather?', tools=[spec['tool']])
out['tools'] = [o.type for o in r.output]
""",
        model=MODEL,
        tool=WEATHER,
    )
    web_text = out["a"]
    assert web_text and web_text == out["b"]
    assert web_text.startswith("Fake answer")  # the web emulator's answer, not Codex's
    # Tools on the web conversation are emulated (tests/test_e2e_responses_web.py).
    assert out["tools"] == ["message", "function_call"], out
    assert len(codex_calls(emulator)) == 1  # remembered: not asked again


@pytest.mark.parametrize(
    ("plan", "code"),
    [
        ({"failed": "server_is_overloaded", "fail_after_events": 4}, "server_is_overloaded"),
        ({"no_completed": True}, "server_error"),
        (
            {"error_event": "context_length_exceeded", "fail_after_events": 4},
            "context_length_exceeded",
        ),
    ],
)
def test_failures_after_output_end_the_stream_with_response_failed(
    mitm: Mitm, emulator: Emulator, token: str, plan: dict[str, Any], code: str
) -> None:
    codex_plan(emulator.url, **plan)
    out = sdk(
        reverse_env(mitm, token),
        """
events = []
stream = client.responses.create(model=spec['model'], input='hello there', stream=True)
for e in stream:
    events.append(e.model_dump())
out['kinds'] = [e['type'] for e in events]
out['last'] = events[-1]
out['seq'] = [e['sequence_number'] for e in events]
""",
        model=MODEL,
    )
    assert "error" not in out, out
    assert out["kinds"][-1] == "response.failed"
    assert sum(k in ("response.completed", "response.failed") for k in out["kinds"]) == 1
    assert out["seq"] == list(range(len(out["seq"])))
    assert out["last"]["response"]["error"]["code"] == code


def tokens_api(mitm: Mitm, key: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{mitm.reverse_port}/tokens/api/tokens",
        headers={"authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, Any] = json.loads(answer.read())
    return result


@pytest.fixture
def pooled(emulator: Emulator, mitm_factory: MitmFactory) -> tuple[Mitm, list[str]]:
    """chat2api with a pool of two accounts behind the code ``pool-code``."""
    tokens = [mint_access_token(exp_in=3600) for _ in range(2)]
    env = {"AUTHORIZATION": "pool-code", "RANDOM_TOKEN": "false", "TIMEOUT_IDLE": "3"}
    return mitm_factory(env, emulator_url=emulator.url, pool=tokens), tokens


@pytest.mark.parametrize(
    "plan",
    [
        {"preset": "server_error"},
        {"failed": "server_is_overloaded", "fail_after_events": 2},
        {"drop_after_events": 2},
        {"preset": "usage_limit"},
    ],
)
def test_failure_before_output_is_retried_on_another_account(
    emulator: Emulator, pooled: tuple[Mitm, list[str]], plan: dict[str, Any]
) -> None:
    mitm, _ = pooled
    codex_plan(emulator.url, **plan)
    out = sdk(
        reverse_env(mitm, "pool-code"),
        """
out['text'] = client.responses.create(model=spec['model'], input='hi').output_text
with client.responses.stream(model=spec['model'], input='hi') as s:
    out['stream'] = s.get_final_response().output_text
""",
        model=MODEL,
    )
    expected = expected_codex_answer("hi", MODEL)
    assert out.get("text") == expected and out.get("stream") == expected, out
    accounts = [c["headers"].get("chatgpt-account-id") for c in codex_calls(emulator)]
    assert len(accounts) == 3 and accounts[0] != accounts[1]
    view = tokens_api(mitm, "pool-code")["tokens"]
    # The x-codex-* limits each answer carried are on /tokens, per account.
    assert all(t["codex"] and t["codex"]["primary"]["used_percent"] is not None for t in view)
    if plan.get("preset") == "usage_limit":
        limited = [t for t in view if "codex" in t["limits"]]
        assert len(limited) == 1 and limited[0]["limits"]["codex"] > time.time() + 3000
        # The limited account is skipped: the stream went to the other one.
        assert accounts[2] == accounts[1]


@pytest.fixture(scope="module")
def web_only(emulator: Emulator, module_mitm_factory: MitmFactory) -> Mitm:
    return module_mitm_factory({"CODEX_BACKEND": "never"}, emulator_url=emulator.url)


@pytest.mark.parametrize("mode", MODES)
def test_codex_backend_never_uses_the_web_conversation(
    emulator: Emulator, web_only: Mitm, token: str, mode: str
) -> None:
    prompt = "Why is the sky blue?"
    out = sdk(
        client_env(web_only, mode, token),
        """
r = client.responses.create(model='gpt-4o', input='hello web')
out['text'], out['kinds'] = r.output_text, [o.type for o in r.output]
with client.responses.stream(model='o4-mini', input=spec['prompt']) as s:
    kinds = [e.type for e in s]
    final = s.get_final_response()
out['stream_kinds'] = [k for k in kinds if k.endswith('.added') or k == 'response.completed']
out['stream_text'] = final.output_text
out['summary'] = [p.text for o in final.output if o.type == 'reasoning' for p in o.summary]
out['usage'] = final.usage.model_dump()
r = client.responses.create(model='gpt-4o', input='Weather in Paris?', tools=[spec['tool']])
out['tools'] = [(o.type, getattr(o, 'name', None)) for o in r.output]
""",
        tool=WEATHER,
        prompt=prompt,
    )
    assert out.get("text") == expected_answer("hello web", "gpt-4o"), out
    assert out["kinds"] == ["message"]
    assert out["stream_text"] == expected_answer(prompt, "o4-mini")
    assert out["stream_kinds"] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.output_item.added",
        "response.content_part.added",
        "response.completed",
    ]
    thought = expected_reasoning(prompt, "o4-mini")
    assert thought and all(
        line in "".join(out["summary"]) for line in thought.split("\n") if line.strip()
    )
    assert out["usage"]["output_tokens_details"]["reasoning_tokens"] > 0
    # Function tools are emulated on the web conversation (tests/test_e2e_responses_web.py).
    assert out["tools"] == [["message", None], ["function_call", "get_weather"]], out
    assert codex_calls(emulator) == []


CAPTURE_PARTS = [
    (name, part)
    for name, parts in (
        ("01-codex-backend-gpt-5.5-reasoning-and-text.sse", 1),
        ("03-public-api-gpt-5.1-codex-max-reasoning-summary-and-function-calls.chunks.jsonl", 4),
        ("04-public-api-gpt-5-function-call-roundtrip.sse", 2),
    )
    for part in range(parts)
]


def capture_response(name: str, part: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The items (output_item.done, in order) and usage of one response of a capture."""
    raw = (CODEX_FIXTURES / name).read_text()
    if name.endswith(".jsonl"):
        events = [json.loads(line) for line in raw.splitlines() if line.strip()]
    else:
        events = [json.loads(line[5:]) for line in raw.splitlines() if line.startswith("data:")]
    starts = [i for i, e in enumerate(events) if e["type"] == "response.created"]
    chosen = events[starts[part] : (starts + [len(events)])[part + 1]]
    items = [e["item"] for e in chosen if e["type"] == "response.output_item.done"]
    completed = next(e for e in chosen if e["type"] == "response.completed")
    return items, completed["response"]["usage"]


def contains(big: Any, small: Any) -> bool:
    """Whether ``big`` has every key and value of ``small`` (recursively)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(contains(big.get(k), v) for k, v in small.items())
    if isinstance(small, list):
        return (
            isinstance(big, list)
            and len(big) == len(small)
            and all(contains(b, s) for b, s in zip(big, small, strict=True))
        )
    return bool(big == small)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "part"), CAPTURE_PARTS)
def test_every_capture_reaches_the_client_with_its_items_and_usage(
    mitm: Mitm, emulator: Emulator, token: str, mode: str, name: str, part: int
) -> None:
    path = str(CODEX_FIXTURES / name)
    codex_plan(emulator.url, replay=path, replay_part=part, framing="wire", count=2)
    out = sdk(
        client_env(mitm, mode, token),
        """
r = client.responses.create(model=spec['model'], input='replay')
out['whole'] = [o.model_dump(mode='json') for o in r.output]
out['usage'] = r.usage.model_dump(mode='json')
with client.responses.stream(model=spec['model'], input='replay') as s:
    kinds = [e.type for e in s]
    final = s.get_final_response()
out['streamed'] = [o.model_dump(mode='json') for o in final.output]
out['stream_usage'] = final.usage.model_dump(mode='json')
out['terminal'] = [k for k in kinds if k in ('response.completed', 'response.failed')]
""",
        model=MODEL,
    )
    assert "error" not in out, out
    items, usage = capture_response(name, part)
    for got in (out["whole"], out["streamed"]):
        assert [i["id"] for i in got] == [i["id"] for i in items]
        for mine, theirs in zip(got, items, strict=True):
            theirs = {k: v for k, v in theirs.items() if k != "encrypted_content"}
            assert contains(mine, theirs), (mine, theirs)
    for got in (out["usage"], out["stream_usage"]):
        assert contains(got, usage)
    assert out["terminal"] == ["response.completed"]


def test_reasoning_of_another_account_is_left_out_on_retry(
    emulator: Emulator, pooled: tuple[Mitm, list[str]]
) -> None:
    """Round robin sends the follow-up to the other account, which cannot read the
    first account's reasoning blob: the request is sent again without it."""
    mitm, _ = pooled
    out = sdk(
        reverse_env(mitm, "pool-code"),
        """
tools = [spec['tool']]
first = client.responses.create(model=spec['model'], input=spec['prompt'], tools=tools,
                                reasoning={'effort': 'low'})
calls = [o for o in first.output if o.type == 'function_call']
outputs = [{'type': 'function_call_output', 'call_id': c.call_id, 'output': 'sunny'}
           for c in calls]
out['kinds'] = [o.type for o in first.output]
out['text'] = client.responses.create(model=spec['model'], previous_response_id=first.id,
                                      input=outputs, tools=tools,
                                      reasoning={'effort': 'low'}).output_text
""",
        model=MODEL,
        tool=WEATHER,
        prompt=ASK_WEATHER,
    )
    assert out.get("kinds") == ["reasoning", "function_call"], out
    assert out["text"] == expected_codex_tool_answer(["sunny"], MODEL)
    calls = codex_calls(emulator)
    accounts = [c["headers"].get("chatgpt-account-id") for c in calls]
    assert len(calls) == 3 and accounts[1] != accounts[0] and accounts[2] == accounts[1]
    kinds = [[i.get("type", "message") for i in c["body"]["input"]] for c in calls[1:]]
    assert kinds == [
        ["message", "reasoning", "function_call", "function_call_output"],
        ["message", "function_call", "function_call_output"],
    ]


def test_stored_responses_in_redis_are_shared_by_instances(
    emulator: Emulator, mitm_factory: MitmFactory, tmp_path: Path, token: str
) -> None:
    with run_redis(tmp_path / "redis") as server:
        env = {"REDIS_URL": server.url, "REDIS_PREFIX": "e2e-responses", "RESPONSES_TTL": "120"}
        a = mitm_factory(env, emulator_url=emulator.url)
        b = mitm_factory(env, emulator_url=emulator.url)
        first = sdk(
            reverse_env(a, token),
            "out['id'] = client.responses.create(model=spec['model'], input='hi').id",
            model=MODEL,
        )
        second = sdk(
            reverse_env(b, token),
            """
r = client.responses.create(model=spec['model'], input='and again', previous_response_id=spec['id'])
out['text'] = r.output_text
out['got'] = client.responses.retrieve(spec['id']).id
""",
            model=MODEL,
            id=first["id"],
        )
        ttl = int(server.command("TTL", f"e2e-responses:response:{first['id']}").strip(b":\r\n"))
    assert second.get("got") == first["id"], second
    assert second["text"] == expected_codex_answer("and again", MODEL)
    # B sent A's history on: the first exchange, then the new message.
    inputs = [c["body"]["input"] for c in codex_calls(emulator)]
    assert [i.get("role", i.get("type")) for i in inputs[1]] == ["user", "assistant", "user"]
    assert 0 < ttl <= 120


def test_an_account_without_codex_is_passed_over_for_another_with_it(
    emulator: Emulator, pooled: tuple[Mitm, list[str]]
) -> None:
    mitm, tokens = pooled
    refused = token_account_id(tokens[0])
    codex_plan(emulator.url, preset="model_not_supported", account=refused, count=10)
    out = sdk(
        reverse_env(mitm, "pool-code"),
        """
out['texts'] = [client.responses.create(model=spec['model'], input='hi').output_text
                for _ in range(3)]
""",
        model=MODEL,
    )
    assert out.get("texts") == [expected_codex_answer("hi", MODEL)] * 3, out
    accounts = [c["headers"].get("chatgpt-account-id") for c in codex_calls(emulator)]
    # Asked once, then remembered: every answer came from the other account.
    assert accounts.count(refused) == 1 and len(accounts) == 4
    limits = [t["limits"] for t in tokens_api(mitm, "pool-code")["tokens"]]
    assert sum(f"codex-web:{MODEL}" in x for x in limits) == 1


def test_codex_backend_always_reports_refusals_to_the_client(
    emulator: Emulator, mitm_factory: MitmFactory, token: str
) -> None:
    with mitm_factory.run({"CODEX_BACKEND": "always"}, emulator_url=emulator.url) as m:
        codex_plan(emulator.url, preset="model_not_supported")
        out = sdk(
            reverse_env(m, token),
            """
try:
    client.responses.create(model=spec['model'], input='hi')
except Exception as e:
    out['refused'] = describe_error(e)
    out['code'] = getattr(e, 'code', None)
r = client.responses.create(model=spec['model'], input='hi', instructions='be brief')
out['text'] = r.output_text
out['items'] = [i.type for i in client.responses.input_items.list(r.id).data]
""",
            model=MODEL,
        )
    assert out["refused"]["status"] == 404 and out["code"] == "model_not_found", out
    assert "not supported when using Codex" in out["refused"]["message"]
    assert out["text"] == expected_codex_answer("hi", MODEL)
    assert out["items"] == ["message"]
    assert codex_calls(emulator)[-1]["body"]["instructions"] == "be brief"


@pytest.mark.parametrize(
    ("preset", "status", "words"),
    [
        ("unauthorized", 401, "refused the access token"),
        ("cloudflare", 403, "Cloudflare"),
        ("account_deactivated", 403, "refused"),
        ("instructions_not_valid", 400, "Instructions are not valid"),
        ("overloaded", 503, "unavailable"),
    ],
)
def test_codex_refusals_reach_the_sdk_as_openai_errors(
    mitm: Mitm, emulator: Emulator, token: str, preset: str, status: int, words: str
) -> None:
    codex_plan(emulator.url, preset=preset)
    out = sdk(
        reverse_env(mitm, token),
        """
try:
    client.responses.create(model=spec['model'], input='hi', stream=True)
except Exception as e:
    out['error'] = describe_error(e)
""",
        model=MODEL,
    )
    assert out["error"]["status"] == status, out
    assert words.lower() in out["error"]["message"].lower()


def test_incomplete_ends_as_response_incomplete(mitm: Mitm, emulator: Emulator, token: str) -> None:
    codex_plan(emulator.url, incomplete="max_output_tokens", count=2)
    out = sdk(
        reverse_env(mitm, token),
        """
r = client.responses.create(model=spec['model'], input='hi')
out['whole'] = [r.status, r.incomplete_details.reason]
kinds = [e.type for e in client.responses.create(model=spec['model'], input='hi', stream=True)]
out['last'] = kinds[-1]
""",
        model=MODEL,
    )
    assert out.get("whole") == ["incomplete", "max_output_tokens"], out
    assert out["last"] == "response.incomplete"
