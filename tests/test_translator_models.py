"""Model names resolved with the table: exact names, GPTs, image suffix, patterns, unknown names."""

from __future__ import annotations

import pytest

from errors import ModelNotFound
from settings.model_table import ModelTable, parse_model_table, shipped_model_table
from translator.models import get_model, list_models, resolve_model


@pytest.fixture(scope="module")
def table() -> ModelTable:
    return parse_model_table(shipped_model_table())


@pytest.mark.parametrize(
    ("name", "slug", "reported", "thinking"),
    [
        ("gpt-3.5-turbo", "text-davinci-002-render-sha", "gpt-3.5-turbo-0125", False),
        ("gpt-4", "gpt-4", "gpt-4-0613", False),
        ("gpt-4-turbo", "gpt-4", "gpt-4-turbo-2024-04-09", False),
        ("gpt-4o", "gpt-4o", "gpt-4o-2024-08-06", False),
        ("gpt-4o-mini", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", False),
        ("gpt-4o-canmore", "gpt-4o-canmore", "gpt-4o-canmore", False),
        ("o1", "o1", "o1-2024-12-18", True),
        ("o3-mini-high", "o3-mini-high", "o3-mini-high-2025-01-31", True),
        ("auto", "auto", "auto", False),
        # The substring accidents of the original (docs/original-behaviour.md#model-names) must not
        # happen:
        ("gpt-4.1", "gpt-4-1", "gpt-4.1", False),  # not gpt-4
        ("gpt-4.1-mini", "gpt-4-1-mini", "gpt-4.1-mini", False),  # not gpt-4o-mini / gpt-4
        ("gpt-4.5-preview", "gpt-4-5", "gpt-4.5-preview", False),  # not gpt-4
        ("o4-mini", "o4-mini", "o4-mini", True),  # not o1 / gpt-4o-mini
        ("o4-mini-high", "o4-mini-high", "o4-mini-high", True),
        ("o3-pro", "o3-pro", "o3-pro", True),  # not o3
        # Patterns:
        ("gpt-5.2", "gpt-5-2", "gpt-5.2", False),
        ("gpt-5.5-thinking", "gpt-5-5-thinking", "gpt-5.5-thinking", True),
        ("gpt-5.6-pro", "gpt-5-6-pro", "gpt-5.6-pro", True),
        ("gpt-4o-2024-11-20", "gpt-4o", "gpt-4o-2024-11-20", False),
        ("o3-mini-2025-01-31", "o3-mini", "o3-mini-2025-01-31", True),
    ],
)
def test_resolve_known(
    table: ModelTable, name: str, slug: str, reported: str, thinking: bool
) -> None:
    model = resolve_model(table, name)
    assert (model.slug, model.reported, model.thinking) == (slug, reported, thinking)
    assert model.requested == name
    assert model.gizmo_id is None and not model.image


def test_fingerprints(table: ModelTable) -> None:
    assert resolve_model(table, "gpt-4o-mini").system_fingerprint == ("fp_c9aa9c0491",)
    assert len(resolve_model(table, "gpt-4-turbo-preview").system_fingerprint) == 6
    assert resolve_model(table, "gpt-4o").system_fingerprint == ()  # none for 2024-08-06


@pytest.mark.parametrize(
    ("name", "gizmo_id"),
    [
        ("gpt-4-gizmo-g-2fkFE8rbu", "g-2fkFE8rbu"),
        ("g-2fkFE8rbu", "g-2fkFE8rbu"),
        ("gpt-4o-gizmo-g-abc", "g-abc"),
        ("gpt-4-gizmo-g-o3mini1", "g-o3mini1"),  # an id containing "o3" is not the o3 model
    ],
)
def test_gizmo(table: ModelTable, name: str, gizmo_id: str) -> None:
    model = resolve_model(table, name)
    assert model.gizmo_id == gizmo_id
    assert model.slug == "auto"  # the table's gizmo_slug, not gpt-4 (the original's bug)
    assert model.reported == name


@pytest.mark.parametrize(
    ("name", "slug", "gizmo_id"),
    [
        ("gpt-4o-image", "gpt-4o", None),
        ("gpt-4.1-image", "gpt-4-1", None),
        ("gpt-5.2-image", "gpt-5-2", None),
        ("g-abc-image", "auto", "g-abc"),
    ],
)
def test_image_suffix(table: ModelTable, name: str, slug: str, gizmo_id: str | None) -> None:
    model = resolve_model(table, name)
    assert (model.slug, model.image, model.gizmo_id, model.reported) == (
        slug,
        True,
        gizmo_id,
        name,
    )


@pytest.mark.parametrize("name", ["GPT-4O", "g-", "claude-3-haiku", "llama"])
def test_not_known(table: ModelTable, name: str) -> None:
    model = resolve_model(table, name)  # default mode: the default slug, which answers
    assert (model.slug, model.reported, model.image, model.gizmo_id) == (
        "auto",
        "auto",
        False,
        None,
    )
    assert model.unknown


def test_unknown_default_mode(table: ModelTable) -> None:
    model = resolve_model(table, "my-llama")
    # The answer names the model that answered (the default entry), not the invented name.
    assert (model.slug, model.reported, model.thinking) == ("auto", "auto", False)
    assert model.unknown and model.requested == "my-llama"
    assert resolve_model(table, "my-llama-image").image


@pytest.mark.parametrize("name", ["my-llama", "my-llama-image", "claude-3", "GPT-4o"])
def test_unknown_reject_mode(table: ModelTable, name: str) -> None:
    with pytest.raises(ModelNotFound) as info:
        resolve_model(table, name, unknown="reject")
    error = info.value
    assert error.status == 404 and error.code == "model_not_found"
    assert error.message == f"The model `{name}` does not exist or you do not have access to it."
    # known names, GPTs, image names and patterns still work
    for known in ("gpt-4o", "g-abc", "gpt-4o-image", "gpt-5.2"):
        assert resolve_model(table, known, unknown="reject").requested == known


def test_bad_unknown_policy(table: ModelTable) -> None:
    with pytest.raises(ValueError, match="unknown_model must be 'default' or 'reject'"):
        resolve_model(table, "gpt-4o", unknown="strict")


def test_custom_patterns_first_match_wins() -> None:
    table = parse_model_table(
        {
            "default_slug": "gpt-4o",
            "models": [
                {"name": "claude-3-opus", "slug": "gpt-4o", "reported": "claude-3-opus-20240229"},
                {"glob": "claude-*", "slug": "gpt-4o-mini"},
                {"glob": "claude-3*", "slug": "never"},
                {"regex": r"(?P<family>llama)-(\d+)", "slug": r"\g<family>-slug-\2"},
            ],
        }
    )
    assert resolve_model(table, "claude-3-opus").reported == "claude-3-opus-20240229"
    assert resolve_model(table, "claude-3-haiku").slug == "gpt-4o-mini"
    assert resolve_model(table, "llama-3").slug == "llama-slug-3"
    assert resolve_model(table, "xllama-3").slug == "gpt-4o"  # regex is anchored
    assert resolve_model(table, "llama-3x").slug == "gpt-4o"
    assert table.gizmo_slug == "gpt-4o"  # defaults to default_slug


def test_list_models(table: ModelTable) -> None:
    data = list_models(table)
    ids = [m["id"] for m in data]
    assert ids[0] == "auto" and "gpt-4o" in ids and "o4-mini" in ids
    assert len(ids) == len(set(ids))
    assert all(set(m) == {"id", "object", "created", "owned_by"} for m in data)
    assert all(m["object"] == "model" and isinstance(m["created"], int) for m in data)


def test_listed_false_hides_exact_entry() -> None:
    table = parse_model_table(
        {"default_slug": "auto", "models": [{"name": "secret", "slug": "auto", "listed": False}]}
    )
    assert list_models(table) == []
    assert get_model(table, "secret")["id"] == "secret"


@pytest.mark.parametrize("model_id", ["gpt-4o", "g-abc", "gpt-4o-image", "gpt-5.2"])
def test_get_model(table: ModelTable, model_id: str) -> None:
    assert get_model(table, model_id) == {
        "id": model_id,
        "object": "model",
        "created": table.created,
        "owned_by": "openai",
    }


def test_get_model_unknown_is_404_even_in_default_mode(table: ModelTable) -> None:
    with pytest.raises(ModelNotFound):
        get_model(table, "no-such-model")


# Every row of the original's substring table (its order, first match wins) lands
# where the original sent it, for names no exact entry or pattern knows.
@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("my-o3-mini-high-x", "o3-mini-high"),
        ("o3-mini-medium-2", "o3-mini-medium"),
        ("o3-mini-low-2", "o3-mini-low"),
        ("o3-mini-x", "o3-mini"),
        ("o3-2025-04-16", "o3"),
        ("o1-preview-x", "o1-preview"),
        ("o1-pro-2025", "o1-pro"),
        ("o1-mini-x", "o1-mini"),
        ("o1-x", "o1"),
        ("gpt-4.5o", "gpt-4-5"),  # the original's slug was never served: nearest current
        ("gpt-4o-canmore-x", "gpt-4o-canmore"),
        ("gpt-4o-mini-x", "gpt-4o-mini"),
        ("chatgpt-4o-latest", "gpt-4o"),
        ("gpt-4-mobile-x", "gpt-4-mobile"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4-1106-preview", "gpt-4"),
        ("gpt-3.5-turbo-0125", "text-davinci-002-render-sha"),
        ("gpt-3.5-turbo-instruct", "text-davinci-002-render-sha"),
        ("auto-x", "auto"),
    ],
)
def test_original_substring_rules(table: ModelTable, name: str, slug: str) -> None:
    model = resolve_model(table, name, unknown="reject")  # known: no 404
    assert (model.slug, model.reported) == (slug, name)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("gpt-4o-image", "gpt-4o"),
        ("gpt-4o-images", "gpt-4o"),
        ("imagegpt-4o", "gpt-4o"),
        ("gpt-image-1", "auto"),
        ("image", "auto"),
        ("dall-e-image-3", "auto"),
    ],
)
def test_image_anywhere_in_the_name(table: ModelTable, name: str, slug: str) -> None:
    model = resolve_model(table, name)
    assert (model.slug, model.image) == (slug, True)


def test_contains_entries_in_table_order() -> None:
    table = parse_model_table(
        {
            "default_slug": "x",
            "models": [
                {"contains": "mini", "slug": "small"},
                {"contains": "gpt", "slug": "big"},
            ],
        }
    )
    assert resolve_model(table, "gpt-mini").slug == "small"
    assert resolve_model(table, "gpt-max").slug == "big"
    assert resolve_model(table, "GPT").slug == "x"  # case-sensitive


@pytest.mark.parametrize(
    ("name", "persona", "refused"),
    [
        ("gpt-4", "chatgpt-freeaccount", True),
        ("gpt-4", "chatgpt-noauth", True),
        ("gpt-4", "chatgpt-paid", False),
        ("gpt-4", "chatgpt-teamaccount", False),  # an unknown persona is let through
        ("gpt-4", None, False),
        ("gpt-4-0613", "chatgpt-freeaccount", True),  # the substring rule is paid too
        ("o1-preview", "chatgpt-freeaccount", True),
        ("gpt-4o", "chatgpt-freeaccount", False),
        ("gpt-4o-mini", "chatgpt-noauth", False),
    ],
)
def test_paid_models_refused_for_free_personas(
    table: ModelTable, name: str, persona: str | None, refused: bool
) -> None:
    error = resolve_model(table, name).refused_for(persona)
    assert (error is not None) == refused
    if error is not None:
        assert error.status == 404 and error.code == "model_not_found"
        assert name in error.message
