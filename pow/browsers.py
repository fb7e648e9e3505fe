"""Browser profiles chosen by the original's settings.

The original picked, per account, a curl_cffi target from ``IMPERSONATE`` and a user
agent from ``USER_AGENTS`` or from a generator filtered by ``DEVICE_TUPLE``,
``BROWSER_TUPLE`` and ``PLATFORM_TUPLE`` (docs/original-settings.md). It paired them
at random, so a Safari user agent could travel on a Chrome TLS handshake. Here every
profile is one browser: the TLS target, the user agent, the client hints and the
proof-of-work config all describe the same Chrome or Edge.

Only Chromium browsers are built: the proof-of-work config imitates what Chrome's
sentinel script observes (``pow/profile.py``). Targets and filters naming other
browsers or phones are reported back so that the caller can warn about them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pow.profile import PROFILES, BrowserProfile

__all__ = ["BrowserChoice", "BuiltProfiles", "build_profiles", "sec_ch_ua"]

_BROWSERS = ("chrome", "edge")
_PLATFORMS = ("macos", "windows", "linux")
_DEVICES = ("desktop",)

_TARGET = re.compile(r"(chrome|edge)(\d+)([a-z]?)(?:_(macos))?")
_CHROMIUM_UA = re.compile(r"\bChrome/(\d+)")
_EDGE_UA = re.compile(r"\bEdg/(\d+)")


@dataclass(frozen=True, kw_only=True)
class BrowserChoice:
    """The settings that choose browsers; all empty means the built-in profiles."""

    impersonate: tuple[str, ...] = ()
    user_agents: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    browsers: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()

    @property
    def default(self) -> bool:
        return not (
            self.impersonate or self.user_agents or self.devices or self.browsers or self.platforms
        )


@dataclass(frozen=True, kw_only=True)
class BuiltProfiles:
    profiles: tuple[BrowserProfile, ...]
    #: human-readable notes on what was left out and why (for start-up warnings)
    skipped: tuple[str, ...] = field(default=())


def sec_ch_ua(version: int, brand: str = "Google Chrome") -> str:
    """The ``sec-ch-ua`` value Chromium sends for a major version.

    Chromium derives the order of its three brands and the spelling of the
    "Not A Brand" entry from the major version (its brand GREASE scheme), so one
    version always sends the same header.
    """
    chars = (" ", "(", ":", "-", ".", "/", ")", ";", "=", "?", "_")
    grease_versions = ("8", "99", "24")
    orders = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
    grease = f"Not{chars[version % 11]}A{chars[(version + 1) % 11]}Brand"
    entries = (
        (grease, grease_versions[version % 3]),
        ("Chromium", str(version)),
        (brand, str(version)),
    )
    placed: list[tuple[str, str]] = [("", "")] * 3
    for entry, slot in zip(entries, orders[version % 6], strict=True):
        placed[slot] = entry
    return ", ".join(f'"{name}";v="{v}"' for name, v in placed)


def build_profiles(choice: BrowserChoice, known_targets: Iterable[str]) -> BuiltProfiles:
    """Profiles for ``choice``; ``known_targets`` are the curl_cffi targets installed.

    Raises ValueError (naming the setting) when nothing usable remains.
    """
    if choice.default:
        return BuiltProfiles(profiles=PROFILES)
    known = set(known_targets)
    skipped: list[str] = []
    browsers = _filter("BROWSER_TUPLE", choice.browsers, _BROWSERS, skipped)
    platforms = _filter("PLATFORM_TUPLE", choice.platforms, _PLATFORMS, skipped)
    _filter("DEVICE_TUPLE", choice.devices, _DEVICES, skipped)
    wanted = [t for t in choice.impersonate if t in known] or sorted(known)
    targets = _targets(wanted, browsers, skipped)
    if not targets:
        raise ValueError("IMPERSONATE: no Chrome or Edge desktop target left to impersonate")
    if choice.user_agents:
        profiles = [_from_user_agent(ua, i, targets) for i, ua in enumerate(choice.user_agents)]
    else:
        if not choice.impersonate:
            # No explicit targets: the newest few, as a browser population would be.
            targets = sorted(targets, key=lambda t: t[1])[-3:]
        pairs = [
            (t, p)
            for t in targets
            for p in platforms
            # A target built for macOS goes with a macOS user agent only.
            if p == "macos" or not t[0].endswith("_macos")
        ]
        if not pairs:
            raise ValueError("PLATFORM_TUPLE: no IMPERSONATE target fits these platforms")
        profiles = [
            _profile(target, version, kind, platform, i)
            for i, ((target, version, kind), platform) in enumerate(pairs)
        ]
    return BuiltProfiles(profiles=tuple(profiles), skipped=tuple(skipped))


def _filter(
    name: str, wanted: Sequence[str], supported: tuple[str, ...], skipped: list[str]
) -> tuple[str, ...]:
    if not wanted:
        return supported[:1] if name == "PLATFORM_TUPLE" else supported
    kept = tuple(w for w in (x.lower() for x in wanted) if w in supported)
    dropped = [w for w in wanted if w.lower() not in supported]
    if dropped:
        skipped.append(
            f"{name}: {', '.join(dropped)} not built (only {', '.join(supported)}: the "
            "proof of work imitates desktop Chrome)"
        )
    if not kept:
        raise ValueError(f"{name}: none of {', '.join(wanted)} can be imitated")
    return kept


def _targets(
    names: Iterable[str], browsers: tuple[str, ...], skipped: list[str]
) -> list[tuple[str, int, str]]:
    out: list[tuple[str, int, str]] = []
    other: list[str] = []
    for name in names:
        match = _TARGET.fullmatch(name)
        if match is None:
            other.append(name)
            continue
        if match.group(1) in browsers:
            out.append((name, int(match.group(2)), match.group(1)))
    if other:
        skipped.append(
            f"IMPERSONATE: {', '.join(other)} not used (only desktop Chrome and Edge targets "
            "match the proof-of-work config)"
        )
    return out


_SCREENS = ((1440, 900, 8), (1920, 1080, 8), (1512, 982, 10), (2560, 1440, 12), (1728, 1117, 12))
_ZONES = (
    ("America/New_York", ("Eastern Standard Time", "Eastern Daylight Time")),
    ("America/Chicago", ("Central Standard Time", "Central Daylight Time")),
    ("America/Los_Angeles", ("Pacific Standard Time", "Pacific Daylight Time")),
)
_OS = {
    "macos": ("Macintosh; Intel Mac OS X 10_15_7", '"macOS"'),
    "windows": ("Windows NT 10.0; Win64; x64", '"Windows"'),
    "linux": ("X11; Linux x86_64", '"Linux"'),
}


def _profile(target: str, version: int, kind: str, platform: str, i: int) -> BrowserProfile:
    os_token, os_hint = _OS[platform]
    ua = (
        f"Mozilla/5.0 ({os_token}) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{version}.0.0.0 Safari/537.36"
    )
    if kind == "edge":
        ua += f" Edg/{version}.0.0.0"
    brand = "Microsoft Edge" if kind == "edge" else "Google Chrome"
    return _make(target, ua, sec_ch_ua(version, brand), os_hint, i)


def _from_user_agent(ua: str, i: int, targets: list[tuple[str, int, str]]) -> BrowserProfile:
    chrome = _CHROMIUM_UA.search(ua)
    version = int(chrome.group(1)) if chrome else max(t[1] for t in targets)
    # The target whose Chrome version is closest to the user agent's.
    target = min(targets, key=lambda t: (abs(t[1] - version), -t[1]))[0]
    if chrome is None:  # not a Chromium browser: it sends no client hints
        return _make(target, ua, "", "", i, vendor="")
    edge = _EDGE_UA.search(ua)
    brand = "Microsoft Edge" if edge else "Google Chrome"
    if "Windows" in ua:
        hint = '"Windows"'
    elif "Mac OS X" in ua or "Macintosh" in ua:
        hint = '"macOS"'
    else:
        hint = '"Linux"'
    return _make(target, ua, sec_ch_ua(version, brand), hint, i)


def _make(
    target: str, ua: str, ch_ua: str, platform_hint: str, i: int, vendor: str = "Google Inc."
) -> BrowserProfile:
    width, height, cores = _SCREENS[i % len(_SCREENS)]
    zone, names = _ZONES[i % len(_ZONES)]
    return BrowserProfile(
        impersonate=target,
        user_agent=ua,
        sec_ch_ua=ch_ua,
        sec_ch_ua_platform=platform_hint,
        screen_width=width,
        screen_height=height,
        hardware_concurrency=cores,
        js_heap_size_limit=4294967296 if _major(ua) >= 142 else 4294705152,
        timezone=zone,
        timezone_names=names,
        vendor=vendor,
    )


def _major(ua: str) -> int:
    match = _CHROMIUM_UA.search(ua)
    return int(match.group(1)) if match else 0
