"""The mirror's ban list: the syntax of the ``gateway_blocked_paths`` setting.

Each entry is ``[write:]regex``: a regular expression matched, case-folded, at the start of the
canonical path without its leading ``/`` (:func:`mirror.paths.canonical` makes that form);
``write:`` limits the entry to methods other than GET, HEAD and OPTIONS.  The loader parses the
entries once, so a bad regex stops start-up with a message naming the setting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, kw_only=True, slots=True)
class BanRule:
    """One ban-list entry: a regex matched at the start of the canonical path
    (without its leading ``/``), for every method or, with ``write:``, for every
    method but GET, HEAD and OPTIONS."""

    pattern: re.Pattern[str]
    writes_only: bool
    source: str

    def matches(self, method: str, match_path: str) -> bool:
        if self.writes_only and method.upper() in _READ_METHODS:
            return False
        return self.pattern.match(match_path.lstrip("/")) is not None


def parse_ban_rules(entries: Iterable[str]) -> tuple[BanRule, ...]:
    """Parse ``[write:]regex`` entries; raises ValueError naming the bad entry."""
    rules = []
    for raw in entries:
        text = raw.strip()
        writes_only = text.lower().startswith("write:")
        if writes_only:
            text = text[len("write:") :].strip()
        text = text.lstrip("/")
        if not text:
            raise ValueError(f"empty ban-list entry {raw!r}")
        try:
            # Paths are matched case-folded, so the rules are too.
            pattern = re.compile(text, re.IGNORECASE)
        except re.error as e:
            raise ValueError(f"ban-list entry {raw!r} is not a valid regex: {e}") from None
        rules.append(BanRule(pattern=pattern, writes_only=writes_only, source=raw.strip()))
    return tuple(rules)
