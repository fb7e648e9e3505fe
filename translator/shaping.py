"""``stop`` and ``max_tokens`` applied to an answer as it streams.  Pure: no I/O.

ChatGPT's web backend takes neither, so the answer is cut here (README, "Request fields"):

* ``stop``: the content ends before the first stop sequence, also when one is split across
  deltas.  Only a tail that could still start a stop sequence is held back; everything else
  goes out at once.  Reasoning is not searched (OpenAI applies stop to the answer).
* ``max_tokens`` / ``max_completion_tokens``: content plus reasoning tokens, counted with the
  same tokenizer as the usage (:mod:`translator.usage`), never exceed the limit; the answer is
  cut inside the delta that crosses it.

When either ends the answer, :attr:`Shaper.reason` says why (``"stop"`` or ``"length"``) and
the caller finishes the completion with it and closes the backend stream.
"""

from __future__ import annotations

from translator.usage import count_text_tokens

__all__ = ["Shaper"]


class Shaper:
    def __init__(self, *, stop: tuple[str, ...], max_tokens: int | None, model: str) -> None:
        self.stop = tuple(s for s in stop if s)
        self.max_tokens = max_tokens
        self.model = model
        self.reason: str | None = None  # set when the answer was cut
        self._held = ""
        self._longest = max((len(s) for s in self.stop), default=0)
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._bound = 0  # per-delta counts summed: not below the exact total in practice
        self.active = bool(self.stop) or max_tokens is not None

    @property
    def done(self) -> bool:
        return self.reason is not None

    def content(self, text: str) -> str:
        """What of ``text`` may go to the client now."""
        if self.reason is not None or not text:
            return ""
        if self.stop:
            text = self._apply_stop(text)
        return self._budget(text, reasoning=False)

    def reasoning(self, text: str) -> str:
        if self.reason is not None or not text:
            return ""
        return self._budget(text, reasoning=True)

    def flush(self) -> str:
        """The answer ended: release a held-back tail that never became a stop sequence."""
        held, self._held = self._held, ""
        if self.reason is not None or not held:
            return ""
        return self._budget(held, reasoning=False)

    # ---------------------------------------------------------------- stop

    def _apply_stop(self, text: str) -> str:
        s = self._held + text
        self._held = ""
        first = -1
        for seq in self.stop:
            i = s.find(seq)
            if i >= 0 and (first < 0 or i < first):
                first = i
        if first >= 0:
            self.reason = "stop"
            return s[:first]
        keep = self._possible_start(s)
        self._held = s[keep:]
        return s[:keep]

    def _possible_start(self, s: str) -> int:
        """The index of the earliest tail of ``s`` that is a prefix of some stop sequence."""
        lo = max(0, len(s) - self._longest + 1)
        for i in range(lo, len(s)):
            tail = s[i:]
            if any(seq.startswith(tail) for seq in self.stop):
                return i
        return len(s)

    # ---------------------------------------------------------------- budget

    def _budget(self, text: str, *, reasoning: bool) -> str:
        limit = self.max_tokens
        if limit is None or not text:
            return text
        own, other_parts = (
            (self._reasoning, self._content) if reasoning else (self._content, self._reasoning)
        )
        # Cheap first: a delta's own count; the exact count of the whole only near the limit.
        self._bound += count_text_tokens(text, self.model)
        if self._bound + 2 < limit:
            own.append(text)
            return text
        before = "".join(own)
        other = count_text_tokens("".join(other_parts), self.model) if other_parts else 0
        total = count_text_tokens(before + text, self.model) + other
        if total <= limit:
            own.append(text)
            self._bound = total
            return text
        lo, hi = 0, len(text)  # the longest prefix that fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count_text_tokens(before + text[:mid], self.model) + other <= limit:
                lo = mid
            else:
                hi = mid - 1
        self.reason = "length"
        own.append(text[:lo])
        return text[:lo]
