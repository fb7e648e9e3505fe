"""The parsed request: immutable values every OpenAI request parser produces.

:mod:`translator.request.chat` fills them from a Chat Completions body; a Responses API parser
fills the same values from ``input`` items, so that :mod:`translator.backend_body` and the token
counting in :mod:`translator.usage` serve both without knowing which API the client spoke.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from translator.options import NO_OPTIONS, Options

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
ROLES: tuple[Role, ...] = ("system", "assistant", "user", "function", "tool", "developer")


@dataclass(frozen=True, kw_only=True)
class TextPart:
    text: str


@dataclass(frozen=True, kw_only=True)
class ImagePart:
    url: str  # https://… or data:image/…;base64,…
    detail: str | None = None  # auto, low, high


@dataclass(frozen=True, kw_only=True)
class FilePart:
    file_data: str | None = None  # data:…;base64,…
    filename: str | None = None
    file_id: str | None = None  # an OpenAI Files id: cannot be fetched from here


@dataclass(frozen=True, kw_only=True)
class InputAudioPart:
    data: str  # base64
    format: str  # wav, mp3


Part = TextPart | ImagePart | FilePart | InputAudioPart


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    id: str | None  # None for a legacy ``function_call``
    name: str
    arguments: str


@dataclass(frozen=True, kw_only=True)
class Message:
    role: Role
    content: tuple[Part, ...] = ()  # string content is one TextPart; null is ()
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def text(self) -> str:
        """The text parts joined by newlines (refusals count as text)."""
        return "\n".join(p.text for p in self.content if isinstance(p, TextPart))


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None  # max_completion_tokens, else max_tokens
    temperature: float | None = None
    top_p: float | None = None
    reasoning_effort: str | None = None
    user: str | None = None
    conversation_id: str | None = None
    parent_message_id: str | None = None
    history_disabled: bool | None = None  # None: use the setting
    account_id: str | None = None  # body key Chatgpt-Account-Id
    ignored: tuple[str, ...] = ()  # fields present but not honoured, for logs
    options: Options = NO_OPTIONS  # tools, structured output, stop (translator/options.py)


_LEADING_URL = re.compile(r"\s*(https?://[^\s]+)(?:\s+|$)", re.IGNORECASE)


def split_leading_urls(text: str) -> tuple[tuple[str, ...], str]:
    """``UPLOAD_BY_URL`` (docs/original-behaviour.md#messages): the URLs a text starts with, and the
    rest.

    ``"https://a/x.png https://b/y.pdf what are these?"`` gives both URLs and
    ``"what are these?"``; a text that does not start with ``http`` is left whole.
    """
    urls: list[str] = []
    rest = text
    while (match := _LEADING_URL.match(rest)) is not None:
        urls.append(match.group(1))
        rest = rest[match.end() :]
    return tuple(urls), (rest if urls else text)
