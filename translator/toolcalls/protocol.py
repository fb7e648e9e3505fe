"""The prompt side of tool emulation: instructions, history and corrections in our markup.

:func:`emulate` rewrites a :class:`~translator.request.ChatRequest` for the web conversation:
a system message first with the tools (names, descriptions, JSON schemas), the calling rules,
the ``tool_choice`` and the answer format; earlier assistant calls as the markup the model is
asked to write; tool results as ``<chat2api:result>`` blocks in a user message, so the model
reads them as what came back.  A request without tools, tool history or a response format is
returned unchanged: nothing is injected.  docs/tool-emulation.md explains the choices.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from translator.options import Options, ResponseFormat, ToolSpec
from translator.request import ChatRequest, Message, TextPart

__all__ = ["emulate", "needs_emulation", "render_call", "correction"]

_CALL_RULES = """\
To call a tool, write this markup, with the arguments as one JSON object that matches the \
tool's "parameters" schema:

<chat2api:call name="TOOL_NAME">
{"argument": "value"}
</chat2api:call>

Rules:
- Use only the tool names listed below, spelled exactly as given.
- {several}
- After your last call write nothing more: end the reply there. The results come back in the \
next message, in <chat2api:result> blocks.
- Never describe a call in words instead of making it, and never invent a tool's result.
- {choice}"""

_NO_SANDBOX = """\
The tools belong to the program you are talking to and run on the user's side, not in ChatGPT. \
In this conversation you have no Python, code interpreter, sandbox, /mnt/data files or \
browsing of your own: when a task needs to run code, read files or fetch something, call one of \
the tools below instead."""


def needs_emulation(req: ChatRequest) -> bool:
    opts = req.options
    return bool(opts.tools) or opts.response_format is not None


def emulate(req: ChatRequest) -> ChatRequest:
    """The request as the web model must see it (unchanged when nothing asks for emulation)."""
    if not needs_emulation(req):
        return req
    head = Message(role="system", content=(TextPart(text=instructions(req.options)),))
    messages = (head, *_history(req.messages, req.options))
    return replace(req, messages=messages)


def instructions(opts: Options) -> str:
    sections: list[str] = []
    if opts.tools and opts.tool_choice.mode == "none":
        sections.append(
            "# Tools\nTool calling is off for this reply: answer in plain text, without any "
            "<chat2api:call> markup."
        )
    elif opts.tools:
        sections.append(_tool_section(opts))
    if opts.response_format is not None:
        sections.append(_format_section(opts.response_format, calls=opts.calls_allowed))
    return "\n\n".join(sections)


def _tool_section(opts: Options) -> str:
    choice = opts.tool_choice
    if choice.mode == "named":
        rule = f"In this reply you must call the tool {choice.name}. Do not answer in plain text."
    elif choice.mode == "required":
        rule = "In this reply you must call at least one tool. Do not answer in plain text."
    else:
        rule = (
            "Call a tool when it helps with the request; otherwise answer in plain text without "
            "any markup."
        )
    several = (
        "To make several calls, write several blocks one after the other."
        if opts.parallel_tool_calls
        else "Make at most one call per reply."
    )
    listing = json.dumps([_tool_json(t) for t in opts.tools], ensure_ascii=False, indent=1)
    mode = choice.name if choice.mode == "named" else choice.mode
    return (
        "# Tools\n"
        + _NO_SANDBOX
        + "\n\n"
        + _CALL_RULES.replace("{several}", several).replace("{choice}", rule)
        + f"\n\nTool choice: {mode}\n<chat2api:tools>\n{listing}\n</chat2api:tools>"
    )


def _tool_json(tool: ToolSpec) -> dict[str, object]:
    out: dict[str, object] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out["parameters"] = tool.parameters or {"type": "object", "properties": {}}
    return out


def _format_section(fmt: ResponseFormat, *, calls: bool) -> str:
    when = "When you do not call a tool, your" if calls else "Your"
    if fmt.kind == "json_object" or not fmt.schema:
        return (
            f"# Answer format\n{when} whole reply must be one JSON object, with nothing before "
            "or after it: no prose and no markdown code fence.\n<chat2api:schema>\n"
            '{"type": "object"}\n</chat2api:schema>'
        )
    schema = json.dumps(fmt.schema, ensure_ascii=False, indent=1)
    return (
        f"# Answer format\n{when} whole reply must be one JSON value that validates against the "
        "JSON schema below (every required key, the exact types, no extra keys where "
        "additionalProperties is false), with nothing before or after it: no prose and no "
        f'markdown code fence.\n<chat2api:schema name="{fmt.name}">\n{schema}\n'
        "</chat2api:schema>"
    )


def render_call(name: str, arguments: str) -> str:
    return f'<chat2api:call name="{name}">\n{arguments}\n</chat2api:call>'


def _render_result(name: str | None, call_id: str | None, text: str) -> str:
    attrs = f' name="{name}"' if name else ""
    if call_id:
        attrs += f' call_id="{call_id}"'
    return f"<chat2api:result{attrs}>\n{text}\n</chat2api:result>"


def _history(messages: Sequence[Message], opts: Options) -> list[Message]:
    names = {c.id: c.name for m in messages for c in m.tool_calls if c.id is not None}
    out: list[Message] = []
    results: list[str] = []

    def flush() -> None:
        if results:
            out.append(Message(role="user", content=(TextPart(text="\n\n".join(results)),)))
            results.clear()

    for m in messages:
        if m.role == "tool":
            results.append(_render_result(names.get(m.tool_call_id or ""), m.tool_call_id, m.text))
            continue
        if m.role == "function":
            results.append(_render_result(m.name, None, m.text))
            continue
        flush()
        if m.role == "assistant" and m.tool_calls:
            calls = [render_call(c.name, c.arguments or "{}") for c in m.tool_calls]
            text = "\n\n".join([m.text, *calls] if m.text else calls)
            out.append(Message(role="assistant", content=(TextPart(text=text),)))
        else:
            out.append(m)
    flush()
    return out


def correction(kind: str, detail: str, opts: Options) -> str:
    """The user message of the one corrective retry."""
    if kind == "sandbox":
        return (
            "There is no Python sandbox, code interpreter or /mnt/data here: the tools listed in "
            "the instructions run on the user's side and are the only way to act. Reply again, "
            "calling the right tool with <chat2api:call> markup."
        )
    if kind == "missing_call":
        target = (
            f"the tool {opts.tool_choice.name}"
            if opts.tool_choice.mode == "named"
            else "at least one of the tools listed in the instructions"
        )
        return (
            f"Your previous reply did not call a tool, but this reply must call {target}. "
            "Reply again with only <chat2api:call> blocks, no other text."
        )
    if kind == "call":
        return (
            f"Your previous reply contained an invalid tool call: {detail}. Reply again with "
            "corrected <chat2api:call> blocks (exact tool names, arguments as one JSON object "
            "matching the tool's schema)."
        )
    return (
        f"Your previous reply was not a valid answer: {detail}. Reply again with only the JSON "
        "described in the instructions, nothing before or after it."
    )
