"""What the Codex emulator answers, decided from the request alone, so tests can compute it.

`plan_turn(body)` reads a `/backend-api/codex/responses` body and says what the generated answer
holds (`CodexTurn`): the reasoning summary (when `reasoning` is on and asks for a summary), then
either function calls or a text message. The rules, in order:

1. A fault plan's `tool_calls` (or `answer`) wins.
2. After the last user message, `function_call_output` / `custom_tool_call_output` items mean the
   tool loop is done: a final text, `expected_codex_tool_answer(outputs, model)`.
3. The user text of this turn (every user message after the last tool output or assistant item)
   asks for calls as `call NAME({...json...})` (several allowed), NAME being one of the
   request's function tools: those calls, in order.
4. `tool_choice` "required" or `{"type": "function", "name": N}`: one call to N (or the first
   function tool), with `default_arguments(tool)` built from its JSON schema.
5. Otherwise a text: `expected_codex_answer(prompt, model)`.

With `tool_choice: "none"` rules 3 and 4 never apply; with `parallel_tool_calls: false` rule 3
makes only the first call. With `text.format` `json_schema` or `json_object`, the texts of rules
2 and 5 are JSON instead: `expected_codex_json(format, subject, model)`, the subject being the
prompt (rule 5) or the outputs joined with newlines (rule 2).
`expected_codex_summary(prompt, model)` gives the summary sections.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .answers import split_pieces

__all__ = [
    "CodexTurn",
    "ToolCall",
    "default_arguments",
    "expected_codex_answer",
    "expected_codex_json",
    "expected_codex_summary",
    "expected_codex_tool_answer",
    "last_user_text",
    "plan_turn",
    "split_arguments",
    "split_pieces",
    "tool_outputs",
]

_CALL = re.compile(r"\bcall\s+([A-Za-z_][\w.\-]*)\s*\(")


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    name: str
    arguments: str = "{}"  # the JSON text a function call streams
    custom: bool = False  # a `custom_tool_call` carrying `input` (raw text) instead
    call_id: str | None = None  # None: the emulator makes one up


@dataclass(kw_only=True)
class CodexTurn:
    kind: str  # "text" | "tools" | "final"
    prompt: str
    model: str
    text: str | None = None
    calls: list[ToolCall] = field(default_factory=list)
    preamble: str | None = None  # a `phase: "commentary"` message before the calls
    summary: list[str] = field(default_factory=list)
    reasoning: bool = False  # a reasoning item is emitted
    encrypted: bool = False  # ... carrying encrypted_content


def _tag(*parts: str) -> str:
    return hashlib.sha256("\n".join(("codex", *parts)).encode()).hexdigest()[:8]


def _shown(text: str) -> str:
    return text if len(text) <= 60 else text[:60] + "…"


def expected_codex_answer(prompt: str, model: str) -> str:
    """The generated text answer to a user prompt (no tool loop)."""
    tag = _tag(model, prompt)
    return (
        f"Codex answer {tag} from {model}. You said: «{_shown(prompt)}».\n"
        'Ünïcödé check — 東京 🙂, "quotes" and a \\backslash.\n\nDone.'
    )


def expected_codex_tool_answer(outputs: list[str], model: str) -> str:
    """The final text once tool outputs arrived (every output after the last user message)."""
    tag = _tag(model, *outputs)
    shown = "; ".join(f"«{_shown(o)}»" for o in outputs)
    return f"Codex answer {tag} from {model} after {len(outputs)} tool result(s): {shown}. Done."


def expected_codex_summary(prompt: str, model: str) -> list[str]:
    """Reasoning summary sections (markdown, a bold title each), one summary part per section."""
    tag = _tag(model, prompt)
    return [
        f"**Reading the request**\n\nThe user wrote {len(prompt)} characters.",
        f"**Planning the reply**\n\nAnswer with tag {tag} — naïvely ✓.",
    ]


def _filled(schema: Any, tag: str, name: str) -> Any:
    if not isinstance(schema, dict):
        return f"{name} {tag}"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return _filled(schema[key][0], tag, name)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        props = schema.get("properties") or {}
        return {key: _filled(sub, tag, key) for key, sub in props.items()}
    if kind == "array":
        return [_filled(schema.get("items"), tag, name)]
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(
        str(kind), f"{name} {tag}"
    )


def expected_codex_json(fmt: dict[str, Any], subject: str, model: str) -> str:
    """The text of a structured answer: every schema property filled (strings name + tag)."""
    tag = _tag(model, subject)
    if fmt.get("type") == "json_schema":
        value = _filled(fmt.get("schema"), tag, "value")
    else:
        # json_object: the object the prompt shows, as a model asked "reply like {...}" does
        # (LangChain's json_mode prompts that way); else one with the generated answer.
        shown = _shown_object(subject)
        value = shown if shown is not None else {"answer": expected_codex_answer(subject, model)}
    return json.dumps(value, ensure_ascii=False)


def _shown_object(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    while start >= 0:
        try:
            value, _ = json.JSONDecoder().raw_decode(text[start:])
        except ValueError:
            value = None
        if isinstance(value, dict) and value:
            return value
        start = text.find("{", start + 1)
    return None


def _structured(body: dict[str, Any]) -> dict[str, Any] | None:
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
        return fmt
    return None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("input_text", "output_text", "text")
        ]
        return "\n".join(texts)
    return ""


def _is_message(item: Any, role: str) -> bool:
    return (
        isinstance(item, dict)
        and item.get("type", "message") == "message"
        and item.get("role") == role
    )


def last_user_text(items: list[Any]) -> str:
    """The text parts of the last user message, joined with newlines."""
    for item in reversed(items):
        if _is_message(item, "user"):
            return _text_of(item.get("content"))
    return ""


def turn_user_texts(items: list[Any]) -> str:
    """Every user message of the current turn (after the last tool output or assistant item)."""
    texts: list[str] = []
    for item in reversed(items):
        if _is_message(item, "user"):
            texts.append(_text_of(item.get("content")))
        elif not (_is_message(item, "developer") or _is_message(item, "system")):
            break
    return "\n".join(texts[::-1])


def tool_outputs(items: list[Any]) -> list[str]:
    """Outputs of tool calls sent after the last user message, in order, as text."""
    outputs: list[str] = []
    for item in reversed(items):
        if _is_message(item, "user"):
            break
        if isinstance(item, dict) and item.get("type") in (
            "function_call_output",
            "custom_tool_call_output",
        ):
            out = item.get("output")
            outputs.append(out if isinstance(out, str) else _text_of(out))
    return outputs[::-1]


def _schema_value(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "fake"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        return default_arguments({"parameters": schema}, as_object=True)
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "null": None}.get(
        str(kind), "fake"
    )


def default_arguments(tool: dict[str, Any], *, as_object: bool = False) -> Any:
    """Arguments for a forced call: every required property, valued from its schema."""
    params = tool.get("parameters") or {}
    props = params.get("properties") or {}
    required = params.get("required") or []
    args = {name: _schema_value(props.get(name)) for name in required if isinstance(name, str)}
    return args if as_object else json.dumps(args, ensure_ascii=False, separators=(",", ":"))


def split_arguments(arguments: str) -> list[str]:
    """Argument deltas: pieces of 1 to 7 characters, cut the same way for the same text."""
    pieces: list[str] = []
    i = 0
    while i < len(arguments):
        step = 1 + (len(pieces) * 5 + len(arguments)) % 7
        pieces.append(arguments[i : i + step])
        i += step
    return pieces


def _function_tools(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tools = body.get("tools") or []
    return {
        str(t["name"]): t
        for t in tools
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)
    }


def _asked_calls(prompt: str, tools: dict[str, dict[str, Any]]) -> list[ToolCall]:
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    for m in _CALL.finditer(prompt):
        name = m.group(1)
        if name not in tools:
            continue
        rest = prompt[m.end() :]
        stripped = rest.lstrip()
        if stripped.startswith(")"):
            calls.append(ToolCall(name=name, arguments=default_arguments(tools[name])))
            continue
        try:
            value, end = decoder.raw_decode(stripped)
        except ValueError:
            continue
        if not stripped[end:].lstrip().startswith(")") or not isinstance(value, dict):
            continue
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        calls.append(ToolCall(name=name, arguments=text))
    return calls


def _forced_call(body: dict[str, Any], tools: dict[str, dict[str, Any]]) -> list[ToolCall]:
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = str(choice.get("name"))
        if name in tools:
            return [ToolCall(name=name, arguments=default_arguments(tools[name]))]
    if choice == "required" and tools:
        name, tool = next(iter(tools.items()))
        return [ToolCall(name=name, arguments=default_arguments(tool))]
    return []


def reasoning_flags(body: dict[str, Any]) -> tuple[bool, bool, bool]:
    """(reasoning item?, summary?, encrypted_content?) for this request."""
    reasoning = body.get("reasoning")
    on = isinstance(reasoning, dict) and reasoning.get("effort") != "none"
    summary = on and isinstance(reasoning, dict) and reasoning.get("summary") is not None
    include = body.get("include") or []
    encrypted = on and "reasoning.encrypted_content" in include
    return on, bool(summary), encrypted


def plan_turn(
    body: dict[str, Any],
    *,
    tool_calls: list[ToolCall] | None = None,
    answer: str | None = None,
    preamble: str | None = None,
    summary: list[str] | None = None,
) -> CodexTurn:
    """What the emulator generates for this request body (see the module doc for the rules)."""
    raw_items = body.get("input")
    items: list[Any] = raw_items if isinstance(raw_items, list) else []
    model = str(body.get("model", ""))
    prompt = last_user_text(items)
    on, with_summary, encrypted = reasoning_flags(body)
    turn = CodexTurn(kind="text", prompt=prompt, model=model, reasoning=on, encrypted=encrypted)
    if with_summary:
        turn.summary = (
            list(summary) if summary is not None else expected_codex_summary(prompt, model)
        )
    tools = _function_tools(body)
    outputs = tool_outputs(items)
    if tool_calls:
        turn.kind, turn.calls, turn.preamble = "tools", list(tool_calls), preamble
    elif answer is not None:
        turn.text = answer
    elif outputs:
        turn.kind, turn.text = "final", expected_codex_tool_answer(outputs, model)
    elif body.get("tool_choice") != "none" and tools:
        calls = _asked_calls(turn_user_texts(items), tools)
        if calls and body.get("parallel_tool_calls") is False:
            calls = calls[:1]
        calls = calls or _forced_call(body, tools)
        if calls:
            turn.kind, turn.calls, turn.preamble = "tools", calls, preamble
    if turn.kind == "text" and turn.text is None:
        turn.text = expected_codex_answer(prompt, model)
    fmt = _structured(body)
    if fmt is not None and answer is None and turn.kind != "tools":
        subject = "\n".join(outputs) if turn.kind == "final" else prompt
        turn.text = expected_codex_json(fmt, subject, model)
    return turn
