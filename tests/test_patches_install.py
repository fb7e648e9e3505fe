"""patches/__init__.py: one explicit install, each patch checked first, one log
line for what is active and one per patch that stood aside."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

import patches
from settings import SettingsError, load_settings


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A process where nothing was decided yet, with three fake patches."""
    applied: list[str] = []

    def fake(name: str, lean: bool, why: str | None, broken: bool = False) -> patches.Patch:
        def fits() -> str | None:
            if broken:
                raise AttributeError("no such thing")
            return why

        return patches.Patch(name, lean, fits, lambda: applied.append(name))

    monkeypatch.setattr(
        patches,
        "_registry",
        lambda: [
            fake("fits", False, None),
            fake("misfit", False, "HttpStream.send_response takes (self, x)"),
            fake("broken", False, None, broken=True),
            fake("lean", True, None),
        ],
    )
    saved = (dict(patches._decided), patches._reported, patches._enabled)
    patches._reset_for_tests()
    yield applied
    patches._decided.clear()
    patches._decided.update(saved[0])
    patches._reported, patches._enabled = saved[1], saved[2]


def test_only_what_fits_is_applied_and_a_broken_check_is_a_misfit(fresh: list[str]) -> None:
    decided = patches.install(enabled=True)
    assert fresh == ["fits"]
    assert decided["fits"] is None
    assert decided["misfit"] == "HttpStream.send_response takes (self, x)"
    assert decided["broken"] == "its check failed (AttributeError: no such thing)"
    assert "lean" not in decided  # plain mitmdump: lean-only patches are not considered
    assert patches.active("fits") and not patches.active("misfit")


def test_each_patch_is_decided_once(fresh: list[str]) -> None:
    patches.install(enabled=True, lean=True)
    patches.install(enabled=False)  # the addon, after the launcher: nothing changes
    assert fresh == ["fits", "lean"]
    assert patches.active("lean")


def test_off_applies_nothing(fresh: list[str]) -> None:
    decided = patches.install(enabled=False, lean=True)
    assert fresh == []
    assert set(decided.values()) == {"MITM_PATCHES=off"}
    assert not any(patches.active(name) for name in decided)


def test_the_report_names_active_and_standing_aside_once(
    fresh: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    patches.install(enabled=True)
    with caplog.at_level(logging.INFO, logger="chat2api.patches"):
        patches.report(wanted=True)
        patches.report(wanted=True)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "chat2api patches: active: fits; standing aside: broken, misfit"
    assert len([x for x in lines if x.startswith("chat2api patch misfit stands aside")]) == 1
    assert len([x for x in lines if x.startswith("chat2api patch broken stands aside")]) == 1
    assert len(lines) == 3


def test_off_is_one_line_and_a_differing_setting_is_said(
    fresh: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    patches.install(enabled=False)
    with caplog.at_level(logging.INFO, logger="chat2api.patches"):
        patches.report(wanted=True)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "chat2api patches: active: none; standing aside: broken, fits, misfit"
    assert "mitm_patches=on in the settings" in lines[1] and len(lines) == 2


def test_the_real_patches_fit_the_installed_libraries() -> None:
    """Every pinned mitmproxy (11.0.2 on Python 3.11, 12.3.1 on 3.12+) fits every
    patch checked here; the deferred import is checked in a fresh interpreter
    (tests/test_patches_launcher.py)."""
    from patches import addon_manager, curl, early_answer, inline_stream, memory, tasks

    assert inline_stream.fits() is None
    assert early_answer.fits() is None
    assert addon_manager.fits() is None
    assert tasks.fits() is None
    assert curl.fits() is None
    assert memory.tls_fits() is None


@pytest.mark.parametrize(
    "yaml_text, env, expected",
    [
        ("", {}, "on"),
        ("mitm_patches: off\n", {}, "off"),  # YAML reads a bare off as false
        ("mitm_patches: on\n", {"MITM_PATCHES": "off"}, "off"),
        ("", {"MITM_PATCHES": "ON"}, "on"),
    ],
)
def test_the_setting(tmp_path: Path, yaml_text: str, env: dict[str, str], expected: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml_text)
    assert load_settings(config, env).mitm_patches == expected


def test_a_bad_setting_is_named() -> None:
    with pytest.raises(SettingsError, match="mitm_patches"):
        load_settings(None, {"MITM_PATCHES": "sometimes"})
