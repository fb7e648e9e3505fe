"""The original's mirror switches that change a conversation on its way through.

* ``force_no_history`` (``FORCE_NO_HISTORY``): a seed user's new turn
  (``POST /backend-api/conversation`` or the 2026 ``/backend-api/f/conversation``)
  goes upstream as a temporary chat: ``history_and_training_disabled: true`` (and
  the 2026 front-end's ``is_do_not_remember`` where the body has it). Users who sign
  in with their own token keep their choice: it is their account.
* ``x_sign`` (``X_SIGN``): an ``x-sign`` header on every conversation answer.
* ``file_host`` / ``voice_host`` (``FILE_HOST`` / ``VOICE_HOST``): addresses that
  replace ``files.oaiusercontent.com`` / ``webrtc.chatgpt.com`` in rewritten text.
* ``no_sentinel`` (``NO_SENTINEL``): :mod:`mirror.sentinel`.

See docs/mirror-switches.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from mirror.sentinel import ServerSentinel

CONVERSATION_POST = re.compile(r"^/backend-api/(?:f/)?conversation$")
FILES_HOST = "files.oaiusercontent.com"
VOICE_HOST = "webrtc.chatgpt.com"


def replaced_hosts(file_host: str | None, voice_host: str | None) -> tuple[tuple[str, str], ...]:
    pairs = ((FILES_HOST, file_host), (VOICE_HOST, voice_host))
    return tuple((name, url) for name, url in pairs if url)


@dataclass(frozen=True, kw_only=True, slots=True)
class Switches:
    force_no_history: bool = False
    x_sign: str | None = None
    #: (host name, the operator's address) for the text rewriting: ``FILE_HOST``,
    #: ``VOICE_HOST`` (mirror/rewrite.py ``HostRewriter``)
    hosts: tuple[tuple[str, str], ...] = ()
    sentinel: ServerSentinel | None = None  # NO_SENTINEL (mirror/sentinel.py)

    def answer_headers(self) -> list[tuple[str, str]]:
        """Headers added to a conversation answer."""
        return [("x-sign", self.x_sign)] if self.x_sign else []


def without_history(body: bytes) -> bytes | None:
    """``body`` as a temporary chat, or None when it is not a JSON object (it goes up
    unchanged and the backend judges it)."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    data["history_and_training_disabled"] = True
    if "is_do_not_remember" in data:
        data["is_do_not_remember"] = True
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
