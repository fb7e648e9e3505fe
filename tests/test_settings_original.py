"""The original's settings and formats: literal lists, .env, aliases, look-alike names."""

from __future__ import annotations

from pathlib import Path

import pytest
from curl_cffi.requests import BrowserType

from pow.browsers import BrowserChoice, build_profiles, sec_ch_ua
from settings import SettingsError, load_settings
from settings.load import read_dotenv

KNOWN = [b.value for b in BrowserType]


def test_python_literal_lists_as_the_original_wrote_them() -> None:
    s = load_settings(
        None,
        {
            "IMPERSONATE": "['chrome124', 'edge101']",
            "USER_AGENTS": '["Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0.0.0 Safari/537.36"]',
            "PLATFORM_TUPLE": "('windows', 'macos')",
            "BROWSER_TUPLE": "chrome, edge",
            "DEVICE_TUPLE": "()",
        },
    )
    assert s.impersonate == ("chrome124", "edge101")
    assert s.user_agents == ("Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0.0.0 Safari/537.36",)
    assert s.platform_tuple == ("windows", "macos")
    assert s.browser_tuple == ("chrome", "edge")
    assert s.device_tuple == ()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IMPERSONATE": "['chrome9999']"}, "curl_cffi cannot impersonate chrome9999"),
        ({"USER_AGENTS": "[1, 2]"}, "expected a list of strings"),
        ({"PLATFORM_TUPLE": "('windows'"}, "expected a list such as"),
        ({"TURNSTILE_SOLVER_URL": "ftp://x"}, "expected an http(s) URL"),
        ({"SENTINEL_PROXY_URL": "gopher://x"}, "expected an http(s) or socks proxy URL"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(None, env)
    assert message in str(info.value)
    assert next(iter(env)) in str(info.value)


def test_the_arkose_alias_and_lists() -> None:
    s = load_settings(None, {"ARK0SE_TOKEN_URL": "http://a:1/t, http://b:2/t"})
    assert s.arkose_token_url == ("http://a:1/t", "http://b:2/t")
    # The proper name wins over the alias.
    s = load_settings(None, {"ARK0SE_TOKEN_URL": "http://a/t", "ARKOSE_TOKEN_URL": "http://c/t"})
    assert s.arkose_token_url == ("http://c/t",)


def test_look_alike_variables_are_warned_about() -> None:
    s = load_settings(
        None,
        {
            "RETRY_TIMEZ": "3",
            "CHATGPT_BASE_ULR": "https://x",
            "CHECK_MODEL": "true",
            "PATH": "/bin",
            "HOME": "/root",
            "RETRY_TIMES": "2",
        },
    )
    assert "RETRY_TIMEZ is not a setting; did you mean RETRY_TIMES?" in s.warnings
    assert "CHATGPT_BASE_ULR is not a setting; did you mean CHATGPT_BASE_URL?" in s.warnings
    assert any(w.startswith("CHECK_MODEL is set but has no effect") for w in s.warnings)
    assert len(s.warnings) == 3


def test_dotenv_next_to_config_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("retry_times: 1\n", encoding="utf-8")
    (tmp_path / ".env").write_text(
        "# the original's .env\n"
        "export RETRY_TIMES=5\n"
        "OAI_LANGUAGE='zh-CN'\n"
        'X_SIGN="abc def"\n'
        "HISTORY_DISABLED=false # a comment\n",
        encoding="utf-8",
    )
    s = load_settings(config, {})
    assert (s.retry_times, s.oai_language, s.x_sign, s.history_disabled) == (
        5,
        "zh-CN",
        "abc def",
        False,
    )
    assert load_settings(config, {"RETRY_TIMES": "2"}).retry_times == 2


def test_a_broken_dotenv_line_names_its_place(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("JUST A LINE\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"\.env:1: expected KEY=VALUE"):
        read_dotenv(tmp_path / ".env")


def test_mirror_switches_parse() -> None:
    s = load_settings(
        None,
        {
            "FORCE_NO_HISTORY": "y",
            "NO_SENTINEL": "t",
            "X_SIGN": "sig",
            "FILE_HOST": "https://files.example",
            "VOICE_HOST": "https://voice.example/",
        },
    )
    assert (s.force_no_history, s.no_sentinel, s.x_sign) == (True, True, "sig")
    assert (s.file_host, s.voice_host) == ("https://files.example", "https://voice.example")
    # The original's form: a bare host name (https is assumed).
    s = load_settings(None, {"FILE_HOST": "files.example:8443", "VOICE_HOST": "voice.example"})
    assert (s.file_host, s.voice_host) == ("https://files.example:8443", "https://voice.example")


# --- browser profiles ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "header"),
    [
        (131, '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"'),
        (136, '"Chromium";v="136", "Google Chrome";v="136", "Not.A/Brand";v="99"'),
        (142, '"Chromium";v="142", "Google Chrome";v="142", "Not_A Brand";v="99"'),
    ],
)
def test_client_hints_follow_chromiums_brand_scheme(version: int, header: str) -> None:
    # The values curl_cffi itself sends for these targets (pow/profile.py).
    assert sec_ch_ua(version) == header


def test_impersonate_builds_one_consistent_browser_per_target() -> None:
    built = build_profiles(BrowserChoice(impersonate=("chrome124", "edge101", "safari170")), KNOWN)
    assert [p.impersonate for p in built.profiles] == ["chrome124", "edge101"]
    chrome, edge = built.profiles
    assert "Chrome/124.0.0.0" in chrome.user_agent and "Edg/" not in chrome.user_agent
    assert '"Google Chrome";v="124"' in chrome.sec_ch_ua
    assert "Edg/101.0.0.0" in edge.user_agent and '"Microsoft Edge";v="101"' in edge.sec_ch_ua
    assert any("safari170" in note for note in built.skipped)


def test_user_agents_are_kept_verbatim_with_matching_hints() -> None:
    ua = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36"
    )
    (profile,) = build_profiles(BrowserChoice(user_agents=(ua,)), KNOWN).profiles
    assert profile.user_agent == ua
    assert profile.impersonate == "chrome124"  # the closest target
    assert profile.sec_ch_ua_platform == '"Windows"'
    assert profile.client_hint_headers()["user-agent"] == ua
    firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
    (plain,) = build_profiles(BrowserChoice(user_agents=(firefox,)), KNOWN).profiles
    assert plain.client_hint_headers() == {"user-agent": firefox}  # no client hints


def test_platform_and_browser_filters() -> None:
    built = build_profiles(
        BrowserChoice(impersonate=("chrome124",), platforms=("windows", "linux", "android")), KNOWN
    )
    assert {p.sec_ch_ua_platform for p in built.profiles} == {'"Windows"', '"Linux"'}
    assert any("android" in note for note in built.skipped)
    with pytest.raises(ValueError, match="BROWSER_TUPLE"):
        build_profiles(BrowserChoice(browsers=("firefox",)), KNOWN)
    with pytest.raises(ValueError, match="DEVICE_TUPLE"):
        build_profiles(BrowserChoice(devices=("mobile",)), KNOWN)
