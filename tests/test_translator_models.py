"""Model names resolved with the table: exact names, GPTs, image suffix, patterns, unknown names."""

from __future__ import annotations

import pytest

from errors import ModelNotFound
from settings.model_table import DEFAULT_MODEL_TABLE, ModelTable, parse_model_table
from translator.models import get_model, list_models, resolve_model


@pytest.fixture(scope="module")
def table() -> ModelTable:
    return parse_model_table(DEFAULT_MODEL_TABLE)


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


@pytest.mark.parametrize(
    "name", ["image", "gpt-4o-images", "gpt-image-1", "imagegpt-4o", "GPT-4O", "gpt-4o ", "g-"]
)
def test_not_image_or_not_known(table: ModelTable, name: str) -> None:
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


@pytest.mark.parametrize("name", ["my-llama", "my-llama-image", "gpt-4o-2024", "GPT-4o"])
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
