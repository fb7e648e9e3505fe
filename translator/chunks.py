"""OpenAI chat-completion output: streamed chunks and the non-streamed object.

Shapes follow ``openai-api.md`` (and the openai SDK's types): every chunk of
one stream carries the same ``id``, ``created`` and ``model``; the first delta is
``{"role": "assistant", "content": ""}``; the final chunk has an empty delta and
the ``finish_reason``; with ``include_usage`` every chunk has ``"usage": null``
and one last chunk with ``"choices": []`` carries the usage, before
``data: [DONE]``. A failure after the stream started is one
``data: {"error": {...}}`` event and no ``[DONE]``, so the SDK raises instead of
reporting success. Token counting is not done here (see ``translator.usage``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

from errors import Chat2ApiError

__all__ = ["ChunkEncoder", "CompletionAggregator", "Usage", "json_bytes"]

_DONE = b"data: [DONE]\n\n"


_SURROGATE = re.compile("[\ud800-\udfff]")


def _dumps(obj: Any) -> str:
    """Compact JSON that encodes to UTF-8: lone surrogates (the backend may send
    ``\\ud800`` escapes) stay escaped instead of breaking the answer."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    if _SURROGATE.search(text):
        return json.dumps(obj, separators=(",", ":"))
    return text


def json_bytes(obj: Any) -> bytes:
    """``obj`` as a UTF-8 JSON body (non-ASCII text kept readable where it can be)."""
    text = json.dumps(obj, ensure_ascii=False)
    if _SURROGATE.search(text):
        text = json.dumps(obj)
    return text.encode("utf-8")


@dataclass(frozen=True, kw_only=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens is not None:
            d["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens is not None:
            d["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return d


class ChunkEncoder:
    """Encodes one streamed completion as SSE bytes."""

    def __init__(
        self,
        completion_id: str,
        created: int,
        model: str,
        include_usage: bool,
        system_fingerprint: str | None = None,
        extra_fields: dict[str, Any] | None = None,
    ) -> None:
        self.completion_id = completion_id
        self.created = created
        self.model = model
        self.include_usage = include_usage
        self.system_fingerprint = system_fingerprint
        self.extra_fields = dict(extra_fields or {})
        self.started = False
        self.ended = False
        # Everything before "choices" is the same in every chunk: serialise it once.
        head: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        if system_fingerprint is not None:
            head["system_fingerprint"] = system_fingerprint
        self._head = _dumps(head)[:-1] + ',"choices":'
        tail = ""
        if include_usage:
            tail += ',"usage":null'
        for key, value in self.extra_fields.items():
            tail += "," + _dumps(key) + ":" + _dumps(value)
        self._tail = tail + "}\n\n"
        self._content = self._affixes("content")
        self._reasoning = self._affixes("reasoning_content")

    def _choice(self, delta: dict[str, Any], finish_reason: str | None) -> bytes:
        choice = _dumps(
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        )
        return ("data: " + self._head + choice + self._tail).encode()

    def _affixes(self, key: str) -> tuple[bytes, bytes]:
        """The bytes of a one-string delta chunk before and after its JSON string.

        Cut out of the chunk that :meth:`_choice` makes for an empty string, so the
        fast path below cannot drift from it (key order, separators, the tail)."""
        choice = _dumps([{"index": 0, "delta": {key: ""}, "logprobs": None, "finish_reason": None}])
        before, empty, after = choice.partition('""')
        assert empty and '""' not in after, choice
        return ("data: " + self._head + before).encode(), (after + self._tail).encode()

    @staticmethod
    def _text_chunk(affixes: tuple[bytes, bytes], text: str) -> bytes:
        """What ``_choice({key: text}, None)`` gives, with only ``text`` encoded
        (one per answer piece, so the per-chunk json.dumps was worth avoiding)."""
        try:
            # json.dumps(ensure_ascii=False) quotes a string with this very function;
            # UTF-8 fails exactly on the lone surrogates that _dumps escapes.
            body = encode_basestring(text).encode()
        except UnicodeEncodeError:
            body = encode_basestring_ascii(text).encode()
        return affixes[0] + body + affixes[1]

    def start(self) -> bytes:
        """The first chunk (the role). Called implicitly by the other methods."""
        if self.started:
            return b""
        self.started = True
        return self._choice({"role": "assistant", "content": ""}, None)

    def content(self, text: str) -> bytes:
        if self.ended or not text:
            return b""
        chunk = self._text_chunk(self._content, text)
        return chunk if self.started else self.start() + chunk

    def reasoning(self, text: str) -> bytes:
        if self.ended or not text:
            return b""
        chunk = self._text_chunk(self._reasoning, text)
        return chunk if self.started else self.start() + chunk

    def set_field(self, key: str, value: Any) -> None:
        """A top-level field on every later chunk (``conversation_id`` once it is known)."""
        if self.extra_fields.get(key) == value:
            return
        self.extra_fields[key] = value
        tail = ',"usage":null' if self.include_usage else ""
        for k, v in self.extra_fields.items():
            tail += "," + _dumps(k) + ":" + _dumps(v)
        self._tail = tail + "}\n\n"
        self._content = self._affixes("content")
        self._reasoning = self._affixes("reasoning_content")

    def tool_call(self, index: int, call_id: str, name: str, pieces: tuple[str, ...]) -> bytes:
        """One call as OpenAI streams it: id, type and name with ``arguments: ""`` first, then
        the arguments piece by piece; ``index`` counts the calls of this answer."""
        out = self.call_start(index, call_id, name)
        for piece in pieces:
            out += self.call_args(index, piece)
        return out

    def call_start(self, index: int, call_id: str, name: str) -> bytes:
        if self.ended:
            return b""
        fn = {"name": name, "arguments": ""}
        call = {"index": index, "id": call_id, "type": "function", "function": fn}
        return self.start() + self._choice({"tool_calls": [call]}, None)

    def call_args(self, index: int, piece: str) -> bytes:
        if self.ended or not piece:
            return b""
        delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
        return self.start() + self._choice(delta, None)

    def function_call(self, name: str, pieces: tuple[str, ...]) -> bytes:
        """A legacy ``functions`` answer: ``delta.function_call``, name first."""
        out = self.function_start(name)
        for piece in pieces:
            out += self.function_args(piece)
        return out

    def function_start(self, name: str) -> bytes:
        if self.ended:
            return b""
        return self.start() + self._choice({"function_call": {"name": name, "arguments": ""}}, None)

    def function_args(self, piece: str) -> bytes:
        if self.ended or not piece:
            return b""
        return self.start() + self._choice({"function_call": {"arguments": piece}}, None)

    def finish(self, reason: str, usage: Usage | None = None) -> bytes:
        """The final chunk, the usage chunk (with ``include_usage``) and ``[DONE]``."""
        if self.ended:
            return b""
        self.ended = True
        out = self.start() + self._choice({}, reason)
        if self.include_usage:
            obj: dict[str, Any] = {
                "id": self.completion_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
            }
            if self.system_fingerprint is not None:
                obj["system_fingerprint"] = self.system_fingerprint
            obj["choices"] = []
            obj["usage"] = usage.to_dict() if usage is not None else None
            obj.update(self.extra_fields)
            out += ("data: " + _dumps(obj) + "\n\n").encode()
        return out + _DONE

    def error(self, err: Chat2ApiError) -> bytes:
        """An error after the stream started: one error event, no ``[DONE]``."""
        if self.ended:
            return b""
        self.ended = True
        return ("data: " + _dumps(err.to_dict()) + "\n\n").encode()


class CompletionAggregator:
    """Collects a completion into the non-streamed ``chat.completion`` object."""

    def __init__(
        self,
        completion_id: str,
        created: int,
        model: str,
        system_fingerprint: str | None = None,
        extra_fields: dict[str, Any] | None = None,
    ) -> None:
        self.completion_id = completion_id
        self.created = created
        self.model = model
        self.system_fingerprint = system_fingerprint
        self.extra_fields = dict(extra_fields or {})
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self.finish_reason: str | None = None
        self.tool_calls: list[dict[str, Any]] = []
        self.function_call: dict[str, str] | None = None

    @property
    def text(self) -> str:
        return "".join(self._content)

    @property
    def reasoning_text(self) -> str:
        return "".join(self._reasoning)

    def content(self, text: str) -> None:
        self._content.append(text)

    def reasoning(self, text: str) -> None:
        self._reasoning.append(text)

    def finish(self, reason: str) -> None:
        self.finish_reason = reason

    def tool_call(self, call_id: str, name: str, arguments: str) -> None:
        fn = {"name": name, "arguments": arguments}
        self.tool_calls.append({"id": call_id, "type": "function", "function": fn})

    def build(self, usage: Usage) -> dict[str, Any]:
        calls = bool(self.tool_calls or self.function_call)
        content = None if calls and not self._content else self.text
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        if self.function_call is not None:
            message["function_call"] = self.function_call
        if self._reasoning:
            message["reasoning_content"] = self.reasoning_text
        obj: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self.finish_reason or "stop",
                }
            ],
            "usage": usage.to_dict(),
        }
        if self.system_fingerprint is not None:
            obj["system_fingerprint"] = self.system_fingerprint
        obj.update(self.extra_fields)
        return obj
