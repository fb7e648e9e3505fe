"""OpenAI requests in, parsed and validated.  Pure: no I/O.

One module per OpenAI API, all producing the values of :mod:`~translator.request.values`:

- ``chat.py``: ``POST /v1/chat/completions`` (:func:`parse_chat_request`);
- ``responses.py`` (not written yet): ``POST /v1/responses``, whose ``input`` items (messages with
  ``input_text``/``input_image``/``input_file`` parts) map onto the same messages and parts;
- ``validation.py``: JSON loading and the field checks both share, raising OpenAI's wording.

The backend's bodies are built from those values by :mod:`translator.backend_body`.
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
