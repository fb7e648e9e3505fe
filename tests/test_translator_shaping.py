"""stop and max_tokens applied to a streamed answer (translator/shaping.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from translator.shaping import Shaper
from translator.usage import count_text_tokens

TEXT = "The first line.\nThe second line END and more.\nThird."


def _run(shaper: Shaper, pieces: list[str]) -> str:
    out = []
    for piece in pieces:
        out.append(shaper.content(piece))
        if shaper.done:
            break
    out.append(shaper.flush())
    return "".join(out)


def _split(text: str, cuts: list[int]) -> list[str]:
    bounds = [0, *sorted(set(cuts)), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


@settings(deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(TEXT)), max_size=20))
def test_stop_across_chunk_boundaries(cuts: list[int]) -> None:
    shaper = Shaper(stop=("END", "\nThird"), max_tokens=None, model="gpt-4o")
    assert _run(shaper, _split(TEXT, cuts)) == "The first line.\nThe second line "
    assert shaper.reason == "stop"


def test_only_a_possible_prefix_is_held() -> None:
    shaper = Shaper(stop=("END",), max_tokens=None, model="gpt-4o")
    assert shaper.content("abc E") == "abc "
    assert shaper.content("x") == "Ex"
    assert shaper.content("EN") == ""
    assert shaper.flush() == "EN"
    assert shaper.reason is None


def test_newline_stop() -> None:
    shaper = Shaper(stop=("\n",), max_tokens=None, model="gpt-4o")
    assert _run(shaper, ["Hello", " world\nnext"]) == "Hello world"


@settings(deadline=None)
@given(st.integers(min_value=1, max_value=20), st.lists(st.integers(0, len(TEXT)), max_size=10))
def test_max_tokens_cut(limit: int, cuts: list[int]) -> None:
    shaper = Shaper(stop=(), max_tokens=limit, model="gpt-4o")
    out = _run(shaper, _split(TEXT, cuts))
    assert count_text_tokens(out, "gpt-4o") <= limit
    total = count_text_tokens(TEXT, "gpt-4o")
    if total > limit:
        assert shaper.reason == "length" and TEXT.startswith(out)
        assert count_text_tokens(out, "gpt-4o") >= limit - 2
    else:
        assert out == TEXT and shaper.reason is None


def test_reasoning_counts_towards_the_limit() -> None:
    shaper = Shaper(stop=(), max_tokens=5, model="gpt-4o")
    assert shaper.reasoning("one two three four five six seven") != ""
    assert shaper.reason == "length"
    assert shaper.content("more") == ""
