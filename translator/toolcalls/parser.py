"""Tool calls read out of streamed answer text.  Sans-I/O.

The model writes calls in the markup :mod:`translator.toolcalls.protocol` asks for::

    <chat2api:call name="get_weather">
    {"city": "Paris"}
    </chat2api:call>

:class:`CallParser` is fed the answer's text deltas and returns, in order, plain text (``str``,
passed on at once), :class:`ParsedCall` (a complete call whose arguments passed the tool's
schema) and :class:`CallError` (a call that is malformed, names an unknown tool or breaks the
schema).  It holds back only what could still become a call: a tail that is a prefix of the
opening marker, blank space before it, or a code-fence line that may wrap a call.  A call is
released whole once closed and checked; its ``pieces`` keep the argument text as the deltas
brought it, so that the answer can stream it the way OpenAI streams arguments.

Tolerated, because the web model does it (docs/tool-emulation.md): a code fence around a call
or around its JSON, ``{"name": ..., "arguments": {...}}`` as the body, single quotes or no
quotes around the name, a missing closing marker at the end of the answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from translator.options import ToolSpec
from translator.toolcalls.validate import Invalid, call_arguments, unfence

__all__ = ["OPEN", "CLOSE", "CallError", "CallParser", "ParsedCall"]

OPEN = "<chat2api:call"
CLOSE = "</chat2api:call>"
_CLOSE_START = "</chat2api:call"
_MAX_HEADER = 200
_MAX_BODY = 1_000_000
_NAME_ATTR = re.compile(r"""\s*name\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>/]+))\s*/?\s*\Z""")
# A fence-opening line (maybe still incomplete) and blank space at the very end.
_FENCE_TAIL = re.compile(r"\s*(?:\A|(?<=\n))[ \t]*`{1,3}[A-Za-z0-9_-]*[ \t]*\s*\Z")
_FENCE_LINE = re.compile(r"(?:\A|(?<=\n))[ \t]*```[A-Za-z0-9_-]*[ \t]*\s*\Z")
_BLANK_TAIL = re.compile(r"\s+\Z")


@dataclass(frozen=True, slots=True)
class ParsedCall:
    name: str
    arguments: str  # a JSON object, as the model wrote it
    pieces: tuple[str, ...]  # ``arguments`` cut where the deltas were cut


@dataclass(frozen=True, slots=True)
class CallError:
    code: str  # tool_call_malformed, tool_call_unknown_tool, tool_call_invalid_arguments
    message: str
    name: str | None
    raw: str  # the call's text as the model wrote it


Item = str | ParsedCall | CallError

_TEXT, _HEADER, _BODY = 0, 1, 2


class CallParser:
    def __init__(self, tools: Mapping[str, ToolSpec]) -> None:
        self.tools = tools
        self.calls = 0
        self._state = _TEXT
        self._buf = ""  # held text, or the header / body read so far
        self._name: str | None = None
        self._cuts: list[int] = []  # body offsets where a delta ended
        self._fenced = False  # the current call was opened inside a code fence
        self._after_call = False  # blank space and a closing fence after a call are dropped
        self._lead = ""  # blank space and a fence line dropped before the current marker

    def feed(self, text: str) -> list[Item]:
        out: list[Item] = []
        if text:
            self._buf += text
            self._run(out, final=False)
        return out

    def finish(self) -> list[Item]:
        out: list[Item] = []
        self._run(out, final=True)
        if self._state == _HEADER:
            self._error(out, "tool_call_malformed", "the call's opening marker is not closed")
        elif self._state == _BODY:
            self._close_call(self._buf, out)  # no closing marker: take what is there
        elif self._buf:
            tail = self._buf
            self._buf = ""
            if self._after_call and (not tail.strip() or tail.strip() == "```"):
                return out
            out.append(tail)
        return out

    # ---------------------------------------------------------------- states

    def _run(self, out: list[Item], *, final: bool) -> None:
        while True:
            if self._state == _TEXT:
                if not self._text(out, final):
                    return
            elif self._state == _HEADER:
                if not self._header(out):
                    return
            elif not self._body(out):
                return

    def _text(self, out: list[Item], final: bool) -> bool:
        s = self._buf
        if self._after_call:
            rest = s.lstrip()
            if self._fenced and rest.startswith("```"):
                rest = rest[3:].lstrip()  # the fence that wrapped the calls
                self._fenced = False
            elif self._fenced and "```".startswith(rest):
                self._buf = rest
                return False
            if len(rest) < len(OPEN) and OPEN.startswith(rest):
                self._buf = rest  # empty, or maybe the next call
                return False
            if not rest.startswith(OPEN):
                self._after_call = self._fenced = False
            s = rest
        i = s.find(OPEN)
        if i >= 0:
            before = s[:i]
            fence = _FENCE_LINE.search(before)
            if fence is not None:
                self._fenced = True
                before = before[: fence.start()]
            before = before.rstrip()
            self._lead = s[len(before) : i]  # given back if this is not a call after all
            if before:
                out.append(before)
            self._buf = s[i + len(OPEN) :]
            self._state = _HEADER
            return True
        keep = len(s) if final else _hold_from(s)
        if keep:
            out.append(s[:keep])
        self._buf = s[keep:]
        return False

    def _header(self, out: list[Item]) -> bool:
        s = self._buf
        if s and not (s[0].isspace() or s[0] in ">/"):
            # "<chat2api:callback" or the like: not our marker, plain text after all.
            self._state = _TEXT
            out.append(self._lead + OPEN)
            self._buf = s
            self._after_call = self._fenced = False
            return True
        j = s.find(">")
        if j < 0:
            if len(s) > _MAX_HEADER:
                self._buf = OPEN + s
                self._error(out, "tool_call_malformed", "the call's opening marker is not closed")
                return True
            return False
        attrs = s[:j]
        m = _NAME_ATTR.fullmatch(attrs)
        self._name = next((g for g in m.groups() if g), None) if m else None
        self._buf = s[j + 1 :]
        self._cuts = [len(self._buf)] if self._buf else []
        self._state = _BODY
        if attrs.rstrip().endswith("/"):  # <chat2api:call name="x"/>: a call without arguments
            rest = self._buf
            self._close_call("", out)
            self._buf = rest
        return True

    def _body(self, out: list[Item]) -> bool:
        s = self._buf
        k = s.find(_CLOSE_START)
        if k >= 0:
            end = s.find(">", k)
            if end < 0:
                return False
            rest = s[end + 1 :]
            self._close_call(s[:k], out)
            self._buf = rest
            return True
        if len(s) > _MAX_BODY:
            self._error(out, "tool_call_malformed", "the call's arguments are far too long")
            return True
        if not self._cuts or self._cuts[-1] != len(s):
            self._cuts.append(len(s))
        return False

    # ---------------------------------------------------------------- a call

    def _close_call(self, body: str, out: list[Item]) -> None:
        name = self._name
        raw = body
        self._state = _TEXT
        self._buf = ""
        self._after_call = True
        name, body = _unwrap(name, body)
        if not name:
            self._error(out, "tool_call_malformed", "the call does not name a tool", raw)
            return
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "none"
            self._error(
                out,
                "tool_call_unknown_tool",
                f"the call names the tool {name!r}, which the request does not offer "
                f"(offered: {known})",
                raw,
                name=name,
            )
            return
        try:
            arguments = call_arguments(tool, body)
        except Invalid as e:
            self._error(out, e.code, f"the call to {name!r}: {e.message}", raw, name=name)
            return
        self.calls += 1
        out.append(ParsedCall(name=name, arguments=arguments, pieces=self._pieces(raw, arguments)))

    def _pieces(self, raw: str, arguments: str) -> tuple[str, ...]:
        start = raw.find(arguments)
        if start < 0:
            return (arguments,)
        cuts = [c - start for c in self._cuts if start < c < start + len(arguments)]
        bounds = [0, *cuts, len(arguments)]
        return tuple(arguments[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a)

    def _error(
        self, out: list[Item], code: str, message: str, raw: str = "", *, name: str | None = None
    ) -> None:
        self._state = _TEXT
        self._buf = ""
        self._after_call = True
        out.append(CallError(code=code, message=message, name=name or self._name, raw=raw))


def _unwrap(name: str | None, body: str) -> tuple[str | None, str]:
    """``{"name": ..., "arguments": {...}}`` as a body: the call inside it."""
    text = unfence(body)
    if not text.startswith("{") or '"arguments"' not in text:
        return name, body
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return name, body
    if not isinstance(obj, dict) or set(obj) != {"name", "arguments"}:
        return name, body
    inner = obj["name"]
    if not isinstance(inner, str) or (name and inner != name):
        return name, body
    args = obj["arguments"]
    return inner, args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)


def _hold_from(s: str) -> int:
    """Where the tail that might still become a call starts (``len(s)``: nothing held)."""
    k = len(s)
    lo = max(0, len(s) - len(OPEN) + 1)
    for i in range(s.find("<", lo) if "<" in s[lo:] else len(s), len(s)):
        if OPEN.startswith(s[i:]):
            k = i
            break
    head = s[:k]
    fence = _FENCE_TAIL.search(head)
    if fence is not None:
        return fence.start()
    # Blank space may be what comes before a call (it is dropped then): held briefly.
    blank = _BLANK_TAIL.search(head)
    return blank.start() if blank is not None else k
