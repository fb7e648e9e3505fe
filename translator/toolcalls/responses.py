"""``/v1/responses`` tools on the web conversation: the same emulation as chat completions.

The responses path builds a chat-completions body for the web conversation
(``translator/responses/request.py`` ``chat_body``); this module adds what tools need:

* ``function`` tools as chat tools; ``custom`` tools (free-form input, such as Codex CLI's
  ``apply_patch``) as a function with one string argument, ``input``;
* ``tool_choice``, ``parallel_tool_calls`` and ``text.format`` in chat form;
* history items: ``function_call`` / ``custom_tool_call`` → an assistant message with
  ``tool_calls``, ``*_output`` → a ``tool`` message.

Built-in tools (``web_search``, ``local_shell``, …) cannot run on the web conversation: they are
left out of the prompt, and the caller logs that. A call the model makes to a custom tool goes
back out as a ``custom_tool_call`` with the ``input`` string.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # (translator/responses/request.py imports this module)
    from translator.responses.request import ResponsesRequest

__all__ = ["CUSTOM_INPUT", "chat_tool_fields", "custom_names", "history_messages"]

#: The one argument a custom tool gets in the prompt.
CUSTOM_INPUT = "input"


def custom_names(req: ResponsesRequest) -> frozenset[str]:
    return frozenset(str(t["name"]) for t in req.tools if t.get("type") == "custom")


def chat_tool_fields(req: ResponsesRequest) -> dict[str, Any]:
    """``tools``, ``tool_choice``, ``parallel_tool_calls``, ``response_format`` in chat form."""
    out: dict[str, Any] = {}
    tools = [_tool(t) for t in req.function_tools]
    if tools:
        out["tools"] = tools
        choice = _choice(req.tool_choice)
        if choice is not None:
            out["tool_choice"] = choice
        if req.parallel_tool_calls is not None:
            out["parallel_tool_calls"] = req.parallel_tool_calls
    fmt = (req.text or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        out["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        out["response_format"] = {"type": "json_object"}
    return out


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": tool["name"]}
    if isinstance(tool.get("description"), str):
        fn["description"] = tool["description"]
    if tool.get("type") == "custom":
        what = "The tool's whole input, as free text"
        fmt = tool.get("format")
        if isinstance(fmt, dict) and isinstance(fmt.get("definition"), str):
            what += f" in this {fmt.get('syntax', 'grammar')}: {fmt['definition'][:4000]}"
        fn["parameters"] = {
            "type": "object",
            "properties": {CUSTOM_INPUT: {"type": "string", "description": what}},
            "required": [CUSTOM_INPUT],
        }
    elif isinstance(tool.get("parameters"), dict):
        fn["parameters"] = tool["parameters"]
    return {"type": "function", "function": fn}


def _choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
        return {"type": "function", "function": {"name": choice.get("name")}}
    return None  # a built-in choice: the web conversation cannot honour it, auto stands


def history_messages(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat messages for one non-message input item ([] for reasoning and the like)."""
    kind = item.get("type")
    if kind in ("function_call", "custom_tool_call"):
        if kind == "custom_tool_call":
            arguments = json.dumps({CUSTOM_INPUT: str(item.get("input") or "")})
        else:
            arguments = str(item.get("arguments") or "{}")
        call = {
            "id": str(item.get("call_id") or ""),
            "type": "function",
            "function": {"name": str(item.get("name") or ""), "arguments": arguments},
        }
        return [{"role": "assistant", "content": None, "tool_calls": [call]}]
    if kind in ("function_call_output", "custom_tool_call_output"):
        output = item.get("output")
        if isinstance(output, list):
            output = "\n".join(
                str(p.get("text")) for p in output if isinstance(p, dict) and "text" in p
            )
        text = output if isinstance(output, str) else json.dumps(output)
        return [{"role": "tool", "tool_call_id": str(item.get("call_id") or ""), "content": text}]
    return []


def custom_input(arguments: str) -> str:
    """The ``input`` of a custom tool call made through the function form."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get(CUSTOM_INPUT), str):
        return str(value[CUSTOM_INPUT])
    return arguments
