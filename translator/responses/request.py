"""``POST /v1/responses`` bodies: parsing, and the bodies built from them.

:func:`parse_responses_request` validates a ``CreateResponse`` body into a
:class:`ResponsesRequest` (every failure an InvalidRequest naming its param).
:func:`codex_body` builds the Codex backend's body under its rules, and
:func:`chat_body` a chat-completions body for the web conversation
(``docs/responses-api.md``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from errors import InvalidRequest, PayloadTooLarge
from translator.toolcalls.responses import chat_tool_fields, history_messages

#: Used when a request brings no instructions and no system/developer text: the
#: Codex backend has refused requests without instructions (docs/codex-backend.md).
DEFAULT_INSTRUCTIONS = "You are a helpful assistant."

ITEM_TYPES = frozenset(
    {
        "message",
        "function_call",
        "function_call_output",
        "reasoning",
        "custom_tool_call",
        "custom_tool_call_output",
        "local_shell_call",
        "local_shell_call_output",
        "web_search_call",
        "image_generation_call",
        "tool_search_call",
        "tool_search_output",
        "compaction",
    }
)
ROLES = ("user", "assistant", "system", "developer")
#: Input items the web conversation takes (tool calls through the emulation).
WEB_ITEM_TYPES = frozenset(
    {
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
    }
)
TOOL_CHOICES = ("auto", "none", "required")
# Fields the Codex backend refuses (docs/codex-backend.md): accepted here, not sent.
_DROPPED = (
    "max_output_tokens",
    "max_tool_calls",
    "temperature",
    "top_p",
    "top_logprobs",
    "truncation",
    "user",
    "safety_identifier",
    "prompt_cache_retention",
    "stream_options",
    "background",
)


@dataclass(frozen=True, kw_only=True)
class ResponsesRequest:
    model: str
    #: Input items as sent, a string made into one user message.
    input: list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None
    include: list[str] = field(default_factory=list)
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    #: The client's own values of fields the backend cannot take, echoed back.
    echo_extra: dict[str, Any] = field(default_factory=dict)

    def echo(self) -> dict[str, Any]:
        """The request fields a ``Response`` object repeats."""
        out: dict[str, Any] = {
            "instructions": self.instructions,
            "tools": self.tools,
            "tool_choice": self.tool_choice if self.tool_choice is not None else "auto",
            "parallel_tool_calls": (
                self.parallel_tool_calls if self.parallel_tool_calls is not None else True
            ),
            "metadata": self.metadata or {},
            "store": self.store,
            "previous_response_id": self.previous_response_id,
        }
        if self.text is not None:
            out["text"] = self.text
        out.update(self.echo_extra)
        return out

    @property
    def function_tools(self) -> list[dict[str, Any]]:
        return [t for t in self.tools if t.get("type") in ("function", "custom")]

    @property
    def builtin_tools(self) -> list[str]:
        return [
            str(t.get("type")) for t in self.tools if t.get("type") not in ("function", "custom")
        ]


def _bad(message: str, param: str | None, code: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _load(raw: bytes, max_body_bytes: int) -> dict[str, Any]:
    if len(raw) > max_body_bytes:
        raise PayloadTooLarge(
            f"Request body too large: {len(raw)} bytes, the limit is {max_body_bytes} bytes."
        )
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise _bad(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly.)",
            None,
        ) from None
    if not isinstance(body, dict):
        raise _bad(f"Invalid type for request body: expected an object, got {_kind(body)}.", None)
    return body


def parse_responses_request(raw: bytes, *, max_body_bytes: int) -> ResponsesRequest:
    body = _load(raw, max_body_bytes)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is a required property (a non-empty string)", "model")
    if body.get("conversation") is not None:
        if body.get("previous_response_id") is not None:
            raise _bad(
                "Parameters 'previous_response_id' and 'conversation' cannot be used together.",
                "previous_response_id",
            )
        raise _bad("'conversation' is not supported by this server.", "conversation")
    return ResponsesRequest(
        model=model,
        input=_input(body.get("input")),
        instructions=_opt_str(body, "instructions"),
        tools=_tools(body.get("tools")),
        tool_choice=_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=_opt_bool(body, "parallel_tool_calls"),
        reasoning=_opt_obj(body, "reasoning"),
        text=_opt_obj(body, "text"),
        metadata=_metadata(body.get("metadata")),
        include=[str(x) for x in _opt_list(body, "include")],
        prompt_cache_key=_opt_str(body, "prompt_cache_key"),
        service_tier=_opt_str(body, "service_tier"),
        stream=bool(_opt_bool(body, "stream")),
        store=_opt_bool(body, "store") is not False,
        previous_response_id=_opt_str(body, "previous_response_id"),
        echo_extra={k: body[k] for k in _DROPPED if body.get(k) is not None},
    )


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(f"Invalid type for '{key}': expected a string, got {_kind(value)}.", key)
    return value


def _opt_bool(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise _bad(f"Invalid type for '{key}': expected a boolean, got {_kind(value)}.", key)
    return value


def _opt_obj(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise _bad(f"Invalid type for '{key}': expected an object, got {_kind(value)}.", key)
    return value


def _opt_list(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"Invalid type for '{key}': expected an array, got {_kind(value)}.", key)
    return value


def _metadata(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _bad("Invalid 'metadata': expected an object of strings.", "metadata")
    if len(value) > 16:
        raise _bad("Invalid 'metadata': at most 16 keys.", "metadata")
    return value


def _input(value: object) -> list[dict[str, Any]]:
    if value is None:
        raise _bad("'input' is a required property", "input")
    if isinstance(value, str):
        return [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}
        ]
    if not isinstance(value, list):
        raise _bad(
            f"Invalid type for 'input': expected a string or an array, got {_kind(value)}.", "input"
        )
    items = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"Invalid type for '{where}': expected an object, got {_kind(item)}.", where)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "item_reference":
            raise _bad(
                f"'{where}': item_reference is not supported; send the item itself or use "
                "previous_response_id.",
                where,
            )
        if kind not in ITEM_TYPES:
            raise _bad(
                f"Invalid value for '{where}.type': {kind!r} is not a known item type.",
                f"{where}.type",
            )
        if kind == "message":
            _check_message(item, where)
        elif kind in ("function_call_output", "custom_tool_call_output") and not isinstance(
            item.get("call_id"), str
        ):
            raise _bad(f"'{where}.call_id' is a required property (a string).", f"{where}.call_id")
        elif kind in ("function_call", "custom_tool_call") and not (
            isinstance(item.get("call_id"), str) and isinstance(item.get("name"), str)
        ):
            raise _bad(f"'{where}' needs 'call_id' and 'name' (strings).", where)
        items.append(item)
    return items


def _check_message(item: dict[str, Any], where: str) -> None:
    role = item.get("role")
    if role not in ROLES:
        raise _bad(
            f"Invalid value for '{where}.role': expected one of {', '.join(ROLES)}.",
            f"{where}.role",
        )
    content = item.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _bad(
            f"Invalid type for '{where}.content': expected a string or an array.",
            f"{where}.content",
        )
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _bad(
                f"Invalid '{where}.content[{j}]': expected an object with a type.",
                f"{where}.content[{j}]",
            )


def _tools(value: object) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(f"Invalid type for 'tools': expected an array, got {_kind(value)}.", "tools")
    tools = []
    for i, tool in enumerate(value):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise _bad(f"Invalid '{where}': expected an object with a type.", where)
        if tool["type"] == "function" and isinstance(tool.get("function"), dict):
            # The chat-completions form, flattened as the Responses API wants it.
            tool = {"type": "function", **tool["function"]}
        if tool["type"] in ("function", "custom") and not isinstance(tool.get("name"), str):
            raise _bad(f"'{where}.name' is a required property (a string).", f"{where}.name")
        tools.append(tool)
    return tools


def _tool_choice(value: object) -> Any:
    if value is None or value in TOOL_CHOICES:
        return value
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return value
    raise _bad("Invalid 'tool_choice': expected auto, none, required or an object.", "tool_choice")


# --- the Codex backend's body ----------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _without_id(item: dict[str, Any]) -> dict[str, Any]:
    if "id" not in item:
        return item
    return {k: v for k, v in item.items() if k != "id"}


def codex_body(
    req: ResponsesRequest,
    *,
    slug: str,
    history: list[dict[str, Any]],
    keep_reasoning: bool = True,
    cache_key: str | None = None,
) -> dict[str, Any]:
    """The ``/backend-api/codex/responses`` body (docs/codex-backend.md, "Body rules").

    ``stream`` true and ``store`` false always; non-empty ``instructions`` (the
    client's, else its leading system/developer messages moved there, else a
    neutral default); no item ids; no fields the backend refuses. Without
    ``keep_reasoning`` reasoning items are left out (their encrypted content
    belongs to the account that made them). ``cache_key`` is the
    ``prompt_cache_key`` to use when the client gave none.
    """
    items = [*history, *req.input]
    instructions = req.instructions
    if not instructions:
        lead: list[str] = []
        while (
            items
            and items[0].get("type", "message") == "message"
            and items[0].get("role")
            in (
                "system",
                "developer",
            )
        ):
            lead.append(_text_of(items[0].get("content")))
            items = items[1:]
        instructions = "\n\n".join(t for t in lead if t)
    inputs = [
        _without_id(item) for item in items if keep_reasoning or item.get("type") != "reasoning"
    ]
    body: dict[str, Any] = {
        "model": slug,
        "instructions": instructions or DEFAULT_INSTRUCTIONS,
        "input": inputs,
        "tools": req.tools,
        "tool_choice": req.tool_choice if req.tool_choice is not None else "auto",
        "parallel_tool_calls": (
            req.parallel_tool_calls if req.parallel_tool_calls is not None else True
        ),
        "store": False,
        "stream": True,
    }
    include = [x for x in req.include if x]
    if req.reasoning is not None:
        body["reasoning"] = req.reasoning
        if "reasoning.encrypted_content" not in include:
            include.append("reasoning.encrypted_content")
    if include:
        body["include"] = include
    if req.text is not None:
        body["text"] = req.text
    if req.prompt_cache_key or cache_key:
        body["prompt_cache_key"] = req.prompt_cache_key or cache_key
    if req.service_tier in ("priority", "flex"):
        body["service_tier"] = req.service_tier
    return body


# --- the web conversation's body ---------------------------------------------------------


def web_refusal(req: ResponsesRequest, history: list[dict[str, Any]]) -> InvalidRequest | None:
    """Why the web conversation cannot answer this request, if it cannot."""
    if req.builtin_tools and not req.function_tools:
        names = ", ".join(sorted(set(req.builtin_tools)))
        return _bad(
            f"The tool(s) {names} need the Codex backend; the ChatGPT web conversation "
            "answering this request cannot run them.",
            "tools",
            "unsupported_tool",
        )
    for i, item in enumerate([*history, *req.input]):
        if item.get("type", "message") not in WEB_ITEM_TYPES:
            return _bad(
                f"Input items of type {item.get('type')} need the Codex backend; the ChatGPT "
                "web conversation cannot take them.",
                f"input[{i}]",
            )
    return None


def _chat_part(part: dict[str, Any]) -> dict[str, Any] | None:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text", "refusal"):
        return {"type": "text", "text": str(part.get("text") or part.get("refusal") or "")}
    if kind == "input_image":
        url = part.get("image_url")
        if isinstance(url, dict):
            url = url.get("url")
        if not isinstance(url, str):
            raise _bad("input_image parts need an image_url (file_id is not supported).", "input")
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("auto", "low", "high"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if not isinstance(part.get("file_data"), str):
            raise _bad("input_file parts need file_data (file_id is not supported).", "input")
        return {
            "type": "file",
            "file": {"file_data": part["file_data"], "filename": part.get("filename")},
        }
    return None


def chat_body(req: ResponsesRequest, history: list[dict[str, Any]]) -> dict[str, Any]:
    """A chat-completions body with the same conversation, for the web path."""
    messages: list[dict[str, Any]] = []
    if req.instructions:
        messages.append({"role": "system", "content": req.instructions})
    for item in [*history, *req.input]:
        if item.get("type", "message") != "message":
            # Calls and their outputs as chat tool messages (emulated tools, see
            # translator/toolcalls/responses.py); reasoning items have no use here.
            messages.extend(history_messages(item))
            continue
        role = item.get("role")
        role = "system" if role == "developer" else role
        content = item.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            continue
        parts = [p for p in (_chat_part(x) for x in content or []) if p is not None]
        if role in ("assistant", "system"):
            text = "\n".join(p["text"] for p in parts if p["type"] == "text")
            messages.append({"role": role, "content": text})
        elif parts:
            messages.append({"role": role, "content": parts})
    if not any(m["role"] == "user" for m in messages):
        raise _bad("The input has no user message to answer.", "input")
    body: dict[str, Any] = {"model": req.model, "messages": messages, "stream": True}
    body.update(chat_tool_fields(req))
    effort = (req.reasoning or {}).get("effort")
    if effort in ("minimal", "low", "medium", "high"):
        body["reasoning_effort"] = effort
    return body
