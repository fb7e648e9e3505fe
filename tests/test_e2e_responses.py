"""``/v1/responses`` end to end: the official openai SDK (``responses.create`` and
``responses.stream``, whose accumulator checks the event order) through a running
mitmdump on both listeners, answered by the emulator's Codex backend; storage and
``previous_response_id``; the Codex backend's failures as clients see them; the web
conversation fallback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakechatgpt.answers import expected_answer
from tests.fakechatgpt.harness import (
    Emulator,
    codex_plan,
    expected_codex_answer,
    expected_codex_tool_answer,
    mint_access_token,
    received,
)
from tests.support.clients import client_env, reverse_env, run_client
from tests.support.mitm import Mitm, MitmFactory

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


def test_failure_before_output_is_retried_on_another_account(
    mitm_factory: MitmFactory, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tokens = [mint_access_token(exp_in=3600) for _ in range(2)]
    env = {"AUTHORIZATION": "pool-code", "RANDOM_TOKEN": "false", "TIMEOUT_IDLE": "3"}
    with mitm_factory.run(env, emulator_url=emulator.url, pool=tokens) as m:
        codex_plan(emulator.url, preset="server_error")
        out = sdk(
            reverse_env(m, "pool-code"),
            "out['text'] = client.responses.create(model=spec['model'], input='hi').output_text",
            model=MODEL,
        )
    assert out.get("text") == expected_codex_answer("hi", MODEL), out
    accounts = [c["headers"].get("chatgpt-account-id") for c in codex_calls(emulator)]
    assert len(accounts) == 2 and accounts[0] != accounts[1]


def test_codex_backend_never_uses_the_web_conversation(
    mitm_factory: MitmFactory,
    emulator: Emulator,
    tmp_path_factory: pytest.TempPathFactory,
    token: str,
) -> None:
    env = {"CODEX_BACKEND": "never"}
    with mitm_factory.run(env, emulator_url=emulator.url) as m:
        out = sdk(
            reverse_env(m, token),
            """
r = client.responses.create(model='gpt-4o', input='hello web', reasoning={'effort': 'low'})
out['text'], out['kinds'] = r.output_text, [o.type for o in r.output]
r = client.responses.create(model='gpt-4o', input='Weather in Paris?', tools=[spec['tool']])
out['tools'] = [(o.type, getattr(o, 'name', None)) for o in r.output]
""",
            tool=WEATHER,
        )
    assert out["text"] == expected_answer("hello web", "gpt-4o"), out
    # Function tools are emulated on the web conversation (tests/test_e2e_responses_web.py).
    assert out["tools"] == [["message", None], ["function_call", "get_weather"]], out
    assert codex_calls(emulator) == []
