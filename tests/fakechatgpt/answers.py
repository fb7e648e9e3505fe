"""What the emulator answers: deterministic text from (prompt, model), so end-to-end tests can
compare a proxy's output exactly.

`expected_answer(prompt, model)` is the assistant text the generated stream carries (after every
delta op, including the stray text that is appended and truncated away). `expected_reasoning`
is the reasoning text, or None for models that do not reason:

* tool style (o1, o1-mini, o1-preview, o1-pro, o3-mini*): the `a8km123` tool message's `parts[0]`;
* thoughts style (o3, o3-pro, o4-mini*, slugs containing "thinking"): the `content` of every
  thought item concatenated in order (item 0 ends with a blank line, so concatenation reads well);
  `expected_thoughts` gives the items with their summaries, for a proxy that renders titles.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

TOOL_REASONER = "a8km123"


def reasoning_style(model: str) -> str | None:
    m = model.lower()
    if m in ("o1", "o1-mini", "o1-preview", "o1-pro") or m.startswith("o3-mini"):
        return "tool"
    if m in ("o3", "o3-pro") or m.startswith("o4-mini") or "thinking" in m:
        return "thoughts"
    return None


def answer_tag(prompt: str, model: str) -> str:
    return hashlib.sha256(f"{model}\n{prompt}".encode()).hexdigest()[:8]


def _shown(prompt: str) -> str:
    return prompt if len(prompt) <= 60 else prompt[:60] + "…"


def expected_answer(prompt: str, model: str) -> str:
    tag = answer_tag(prompt, model)
    return (
        f"Fake answer {tag} from {model}. You said: «{_shown(prompt)}».\n"
        "Café crème, naïve façade — déjà vu 🙂 in Zürich and 東京!\n\n"
        'That is all: 1 + 1 = 2, "quoted", done.'
    )


@dataclass(frozen=True, kw_only=True)
class Thought:
    summary: str
    content: str


def expected_thoughts(prompt: str, model: str) -> list[Thought] | None:
    if reasoning_style(model) != "thoughts":
        return None
    tag = answer_tag(prompt, model)
    return [
        Thought(
            summary="Reading the request",
            content=f"The user wrote {len(prompt)} characters; nothing is ambiguous.\n\n",
        ),
        Thought(summary="Drafting the answer", content=f"Draft the reply with tag {tag} — ✓."),
    ]


def expected_reasoning(prompt: str, model: str) -> str | None:
    style = reasoning_style(model)
    if style == "tool":
        tag = answer_tag(prompt, model)
        return (
            f"**Considering the request**\n\nThe user wrote {len(prompt)} characters. "
            f"I will answer with tag {tag} — naïvely ✓."
        )
    thoughts = expected_thoughts(prompt, model)
    if thoughts is None:
        return None
    return "".join(t.content for t in thoughts)


def split_pieces(text: str) -> list[str]:
    """Split into word-sized deltas, each carrying its leading whitespace (as the real site)."""
    pieces = re.findall(r"\s*\S+", text)
    rest = text[sum(len(p) for p in pieces) :]
    if rest:
        pieces.append(rest)
    return pieces
