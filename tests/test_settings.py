"""The settings layer: the model table's and the ban list's syntax, errors naming the setting,
and no import of the packages above it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from settings import SettingsError, load_settings
from settings.ban_list import parse_ban_rules
from settings.load import describe
from settings.model_table import parse_model_table, shipped_model_table
from settings.schema import DEFAULT_GATEWAY_BLOCKED_PATHS
from tests.support.fresh import run_python


def test_none_is_the_shipped_table() -> None:
    assert parse_model_table(None) == parse_model_table(copy.deepcopy(shipped_model_table()))


def test_a_config_without_a_table_gets_the_shipped_one(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("retry_times: 1\n", encoding="utf-8")
    assert load_settings(config, {}).models == parse_model_table(shipped_model_table())


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "model table: expected a mapping"),
        ({"models": []}, "model table.default_slug: required"),
        ({"default_slug": ""}, "default_slug: expected a non-empty string"),
        ({"default_slug": 3}, "default_slug: expected a non-empty string"),
        ({"default_slug": "auto", "unknown_model": "reject"}, "unknown key(s) unknown_model"),
        ({"default_slug": "auto", "modles": []}, "unknown key(s) modles"),
        ({"default_slug": "auto", "models": "gpt-4o"}, "models: expected a list"),
        ({"default_slug": "auto", "models": ["gpt-4o"]}, "models[0]: expected a mapping"),
        ({"default_slug": "auto", "models": [{"slug": "x"}]}, "exactly one of 'name'"),
        (
            {"default_slug": "auto", "models": [{"name": "a", "glob": "a*", "slug": "x"}]},
            "exactly one of 'name'",
        ),
        ({"default_slug": "auto", "models": [{"name": "a"}]}, "models[0].slug: required"),
        (
            {"default_slug": "auto", "models": [{"name": "a", "slug": "x", "slgu": 1}]},
            "models[0]: unknown key(s) slgu",
        ),
        (
            {"default_slug": "auto", "models": [{"name": "a", "slug": "x", "thinking": "yes"}]},
            "models[0].thinking: expected true or false",
        ),
        (
            {
                "default_slug": "auto",
                "models": [{"name": "a", "slug": "x", "system_fingerprint": [1]}],
            },
            "system_fingerprint: expected a list of non-empty strings",
        ),
        (
            {"default_slug": "auto", "models": [{"regex": "gpt-(", "slug": "x"}]},
            "models[0].regex: invalid regular expression",
        ),
        (
            {"default_slug": "auto", "models": [{"regex": "gpt-(\\d)", "slug": "x-\\2"}]},
            "models[0].slug: bad group reference",
        ),
        (
            {"default_slug": "auto", "models": [{"regex": "gpt", "slug": "x-\\g<nope>"}]},
            "models[0].slug: bad group reference",
        ),
        (
            {
                "default_slug": "auto",
                "models": [{"name": "a", "slug": "x"}, {"name": "a", "slug": "y"}],
            },
            "models[1]: duplicate name 'a'",
        ),
        ({"default_slug": "auto", "created": -1}, "created: expected a non-negative integer"),
        ({"default_slug": "auto", "created": True}, "created: expected a non-negative integer"),
    ],
)
def test_bad_tables(obj: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_model_table(obj)
    assert message in str(info.value)


def test_default_ban_list_parses() -> None:
    rules = parse_ban_rules(DEFAULT_GATEWAY_BLOCKED_PATHS)
    assert len(rules) == len(DEFAULT_GATEWAY_BLOCKED_PATHS)
    assert sum(r.writes_only for r in rules) == 4


@pytest.mark.parametrize(
    ("entry", "message"),
    [("backend-api/(", "is not a valid regex"), ("write:", "empty ban-list entry")],
)
def test_bad_ban_entries(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ban_rules([entry])


def test_bad_model_table_fails_at_load_naming_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"models": {"default_slug": "auto", "models": [{"name": "a"}]}}))
    with pytest.raises(SettingsError, match=r"setting MODELS \(models\): .*slug: required"):
        load_settings(config, {})


def test_bad_ban_rule_fails_at_load_naming_the_setting() -> None:
    env = {"GATEWAY_BLOCKED_PATHS": "backend-api/ok\nbackend-api/(oops"}
    with pytest.raises(SettingsError, match=r"GATEWAY_BLOCKED_PATHS .*not a valid regex"):
        load_settings(None, env)


def test_loaded_settings_carry_the_parsed_table() -> None:
    settings = load_settings(None, {})
    assert settings.models == parse_model_table(None)
    assert settings.gateway_blocked_paths == DEFAULT_GATEWAY_BLOCKED_PATHS


def test_settings_import_nothing_above_them() -> None:
    """Settings are the ground floor: loading them pulls in none of the packages built on them."""
    code = (
        "import sys, settings.__main__\n"
        "from settings import load_settings\n"
        "load_settings(None, {})\n"
        "above = {'translator', 'mirror', 'service', 'upstream', 'accounts', 'addons', 'pow'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in above))\n"
    )
    assert run_python(code).strip() == "[]"


def test_settings_log_line_masks_every_secret() -> None:
    env = {
        "AUTHORIZATION": "code-aaaaaaaaaaaaaaaa,code-bbbbbbbbbbbbbbbb",
        "ADMIN_KEY": "admin-cccccccccccccccc",
        "AUTH_KEY": "authkey-dddddddddddddddd",
        "API_PREFIX": "prefix-eeeeeeeeeeeeeeee",
        "PROXY_URL": "http://user:pw-ffffffffffff@proxy.example:8080",
        "EXPORT_PROXY_URL": "socks5://me:pw-gggggggggggg@127.0.0.1:1080",
    }
    shown = json.dumps(describe(load_settings(None, env)), default=str)
    for secret in ("aaaaaaaa", "bbbbbbbb", "cccccccc", "dddddddd", "eeeeeee", "ffffff", "gggggg"):
        assert secret not in shown, shown
    assert "proxy.example:8080" in shown  # the rest of a proxy URL stays readable
