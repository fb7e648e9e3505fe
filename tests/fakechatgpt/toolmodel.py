"""A web model that reads chat2api's tool prompt (translator/toolcalls/protocol.py).

When the first system message carries ``<chat2api:tools>`` or ``<chat2api:schema>``, the
emulator answers like an obliging model (``tool_mode`` "follow", the default):

* the last user message holds ``<chat2api:result>`` blocks → prose quoting the results (or the
  JSON asked for, when a schema is given);
* tools offered and the choice is not ``none`` → a sentence, then a call to the named tool, the
  tool the prompt mentions, or the first one, with the arguments the prompt spells out as
  ``call NAME({...})``, else arguments made from its schema (numbers in the prompt fill integer
  and number fields, in order);
* a schema only → a JSON value made from it (for ``json_object``, the object the prompt shows).

Plans (``/_fake/next`` key ``tool_mode``) break the protocol on purpose: ``several`` (a call to
every tool), ``prose``, ``malformed`` (broken JSON), ``unknown_tool``, ``bad_arguments``
(schema violated), ``refusal``, ``sandbox`` (the ChatGPT-sandbox confusion), ``bad_json``
(prose instead of the structured answer), ``fenced`` (calls wrapped in a code fence).
"""

from __future__ import annotations

import json
import re
from typing import Any

MODES = (
    "follow",
    "several",
    "prose",
    "malformed",
    "unknown_tool",
    "bad_arguments",
    "refusal",
    "sandbox",
    "bad_json",
    "fenced",
)

_TOOLS = re.compile(r"<chat2api:tools>\s*(.*?)\s*</chat2api:tools>", re.DOTALL)
_SCHEMA = re.compile(r"<chat2api:schema[^>]*>\s*(.*?)\s*</chat2api:schema>", re.DOTALL)
_CHOICE = re.compile(r"^Tool choice: (\S+)$", re.MULTILINE)
_RESULT = re.compile(r"<chat2api:result([^>]*)>\n?(.*?)\n?</chat2api:result>", re.DOTALL)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_OBJECT = re.compile(r"\{[^{}]*\}")


def _texts(message: dict[str, Any]) -> str:
    parts = (message.get("content") or {}).get("parts") or []
    return "\n".join(p for p in parts if isinstance(p, str))


def answer(messages: list[dict[str, Any]], mode: str | None) -> str | None:
    """The answer text for a chat2api tool prompt, or None when there is none."""
    system = next((_texts(m) for m in messages if m["author"]["role"] == "system"), "")
    tools_match, schema_match = _TOOLS.search(system), _SCHEMA.search(system)
    if tools_match is None and schema_match is None:
        return None
    tools: list[dict[str, Any]] = json.loads(tools_match.group(1)) if tools_match else []
    schema = json.loads(schema_match.group(1)) if schema_match else None
    choice_match = _CHOICE.search(system)
    choice = choice_match.group(1) if choice_match else "none"
    users = [m for m in messages if m["author"]["role"] == "user"]
    last = _texts(users[-1]) if users else ""
    prompt = next((_texts(m) for m in reversed(users) if "<chat2api:" not in _texts(m)), "")
    mode = mode or "follow"
    if mode == "prose":
        return "I think the answer is simply 42, no tool needed."
    if mode == "refusal":
        return "I'm sorry, but I can't help with that."
    if mode == "sandbox":
        return "I checked /mnt/data in my sandbox, but the folder is empty, so I cannot do that."
    if mode == "bad_json" or (schema is not None and mode == "malformed" and not tools):
        return "Sure! Here is what you asked for: a friendly summary, not JSON."
    results = _RESULT.findall(last)
    if results:
        said = "; ".join(body.strip() for _, body in results)
        if schema is not None:
            return json.dumps(_example(schema, schema, _numbers(said)))
        return f"The tools answered: {said}. That is the final answer."
    if tools and choice != "none":
        return _calls(tools, choice, prompt, mode)
    if schema == {"type": "object"}:  # json_object: the object the prompt shows, if any
        shown = _OBJECT.search(prompt)
        return shown.group(0) if shown else json.dumps({"answer": "example"})
    if schema is not None:
        return json.dumps(_example(schema, schema, _numbers(prompt)), ensure_ascii=False)
    return None


def _calls(tools: list[dict[str, Any]], choice: str, prompt: str, mode: str) -> str:
    named = next((t for t in tools if t["name"] == choice), None)
    mentioned = next((t for t in tools if t["name"] in prompt), None)
    chosen = [named or mentioned or tools[0]]
    if mode == "several":
        chosen = tools
    blocks = []
    for tool in chosen:
        params = tool.get("parameters") or {}
        args: Any = _asked(prompt, tool["name"])
        if args is None:
            args = _example(params, params, _numbers(prompt))
        name = tool["name"]
        if mode == "unknown_tool":
            name = name + "_v2"
        text = json.dumps(args, ensure_ascii=False)
        if mode == "malformed":
            text = text[:-1] + ', "oops": }'
        elif mode == "bad_arguments":
            text = json.dumps({"__unexpected__": [1, 2, 3]})
        blocks.append(f'<chat2api:call name="{name}">\n{text}\n</chat2api:call>')
    calls = "\n".join(blocks)
    if mode == "fenced":
        calls = f"```xml\n{calls}\n```"
    return f"I will use {chosen[0]['name']} for this.\n\n{calls}"


def _asked(prompt: str, name: str) -> Any:
    """The arguments the prompt spells out as ``call NAME({...})``, if it does."""
    at = prompt.find(f"call {name}(")
    if at < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(prompt[at + len(name) + 6 :])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _numbers(text: str) -> list[float]:
    return [float(n) for n in _NUMBER.findall(text)]


def _example(schema: Any, root: Any, numbers: list[float]) -> Any:
    """A value that satisfies ``schema`` (the common subset pydantic and LangChain write)."""
    if not isinstance(schema, dict):
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return _example(target, root, numbers)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            useful = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return _example((useful or options)[0], root, numbers)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: _example(sub, root, numbers) for name, sub in props.items()}
    if kind == "array":
        return [_example(schema.get("items") or {}, root, numbers)]
    if kind == "integer":
        return int(numbers.pop(0)) if numbers else 3
    if kind == "number":
        return numbers.pop(0) if numbers else 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "example"
