"""OpenAI chat requests in, parsed and validated.  Pure: no I/O.

- ``values.py``: the parsed messages, parts and :class:`ChatRequest`;
- ``chat.py``: ``POST /v1/chat/completions`` (:func:`parse_chat_request`);
- ``validation.py``: JSON loading and the field checks, raising OpenAI's wording.

The Responses API's requests are parsed in :mod:`translator.responses.request`.

The web backend's bodies are built from those values by :mod:`translator.backend_body`.
"""

from translator.request.chat import parse_chat_request
from translator.request.values import (
    ROLES,
    ChatRequest,
    FilePart,
    ImagePart,
    InputAudioPart,
    Message,
    Part,
    Role,
    TextPart,
    ToolCall,
    split_leading_urls,
)

__all__ = [
    "ROLES",
    "ChatRequest",
    "FilePart",
    "ImagePart",
    "InputAudioPart",
    "Message",
    "Part",
    "Role",
    "TextPart",
    "ToolCall",
    "parse_chat_request",
    "split_leading_urls",
]
