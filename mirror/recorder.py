"""Finding the conversation id in a streamed ``/conversation`` answer, sans I/O.

Both stream formats name it in their first events: the v1 delta encoding as
``"conversation_id"`` of the ``resume_conversation_token`` event or of the first
``delta`` (``v.conversation_id``), the legacy one in each message object
(docs/backend-protocol.md#answer-stream). A byte-level search with a small carry-over is enough,
and it works on any split of the stream into chunks.
"""

from __future__ import annotations

import re

_ID = re.compile(rb'"conversation_id"\s*:\s*"([0-9A-Za-z_-]{8,64})"')
_CARRY = 160  # longer than any match, so a match split across chunks is still seen
_LIMIT = 256 * 1024  # the id comes first; give up on streams that never name one


class ConversationIdScanner:
    def __init__(self) -> None:
        self.found: str | None = None
        self._tail = b""
        self._seen = 0

    def feed(self, data: bytes) -> str | None:
        """The id, the first time it is complete in the bytes fed so far; else None."""
        if self.found is not None or self._seen > _LIMIT:
            return None
        self._seen += len(data)
        buffer = self._tail + data
        m = _ID.search(buffer)
        if m is not None:
            self.found = m.group(1).decode("ascii")
            self._tail = b""
            return self.found
        self._tail = buffer[-_CARRY:]
        return None
