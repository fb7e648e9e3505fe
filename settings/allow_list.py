"""The mirror's seed allow-list: the syntax of the ``gateway_allowed_paths`` setting.

Each entry is ``[read:]regex``: a regular expression the whole canonical path must
match, case-folded and without its leading ``/`` (``mirror/paths.py`` makes that form
and reads any ``/backend-…`` prefix as ``backend-api``); ``read:`` limits the entry to
GET, HEAD and OPTIONS. The loader parses the entries once, so a bad regex stops
start-up with a message naming the setting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, kw_only=True, slots=True)
class AllowRule:
    """One allow-list entry: a regex for the whole path, for every method or, with
    ``read:``, for GET, HEAD and OPTIONS only."""

    pattern: re.Pattern[str]
    reads_only: bool
    source: str

    def matches(self, method: str, match_path: str) -> bool:
        if self.reads_only and method.upper() not in _READ_METHODS:
            return False
        return self.pattern.fullmatch(match_path.lstrip("/")) is not None


def parse_allow_rules(entries: Iterable[str]) -> tuple[AllowRule, ...]:
    """Parse ``[read:]regex`` entries; raises ValueError naming the bad entry."""
    rules = []
    for raw in entries:
        text = raw.strip()
        reads_only = text.lower().startswith("read:")
        if reads_only:
            text = text[len("read:") :].strip()
        text = text.lstrip("/")
        if not text:
            raise ValueError(f"empty allow-list entry {raw!r}")
        try:
            pattern = re.compile(text, re.IGNORECASE)  # paths are matched case-folded
        except re.error as e:
            raise ValueError(f"allow-list entry {raw!r} is not a valid regex: {e}") from None
        rules.append(AllowRule(pattern=pattern, reads_only=reads_only, source=raw.strip()))
    return tuple(rules)
