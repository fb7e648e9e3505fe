"""One consistent desktop browser, and the probe lists drawn from it.

A proof-of-work config (``pow.config``) imitates what the ChatGPT sentinel script reads
from the browser.  Every value in it, and every header the upstream client sends
(user agent, client hints, TLS fingerprint via the curl_cffi ``impersonate`` target),
must describe the *same* browser; ``BrowserProfile`` is that browser.  The values of
each profile were read from what curl_cffi 0.17 itself sends for the target
(all of its desktop Chrome targets present themselves as macOS).

The probe lists are data: the navigator properties of Appendix A and the window keys
of the original's window-key list.  Upstream's navigator list contradicts its
own config (``language`` zh-CN, ``hardwareConcurrency`` 32), so here the
profile-dependent entries are derived from the profile instead.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "PROFILES",
    "MINUS",
    "NAVIGATOR_KEYS",
    "WINDOW_KEYS",
    "BrowserProfile",
    "pick_profile",
]

#: The sentinel script joins a navigator property and its value with U+2212 MINUS SIGN.
MINUS = "\u2212"

#: ``(property, value, weight)``: the profile-independent navigator probes of
#: reference Appendix A, weighted as upstream weights them.  ``value`` None means the
#: probe is the bare property name (upstream's ``doNotTrack``).  ``vendor``,
#: ``language`` and ``hardwareConcurrency`` are added per profile by
#: ``BrowserProfile.navigator_probes``.
NAVIGATOR_KEYS: tuple[tuple[str, str | None, int], ...] = (
    ("locks", "[object LockManager]", 4),
    ("storage", "[object StorageManager]", 2),
    ("registerProtocolHandler", "function registerProtocolHandler() { [native code] }", 1),
    ("appCodeName", "Mozilla", 1),
    ("permissions", "[object Permissions]", 1),
    ("share", "function share() { [native code] }", 2),
    ("webdriver", "false", 2),
    ("managed", "[object NavigatorManagedData]", 1),
    ("canShare", "function canShare() { [native code] }", 2),
    ("mediaDevices", "[object MediaDevices]", 5),
    ("vibrate", "function vibrate() { [native code] }", 1),
    ("storageBuckets", "[object StorageBucketManager]", 3),
    ("mediaCapabilities", "[object MediaCapabilities]", 2),
    ("getGamepads", "function getGamepads() { [native code] }", 3),
    ("bluetooth", "[object Bluetooth]", 2),
    ("cookieEnabled", "true", 2),
    ("virtualKeyboard", "[object VirtualKeyboard]", 4),
    ("product", "Gecko", 3),
    ("xr", "[object XRSystem]", 4),
    ("clipboard", "[object Clipboard]", 1),
    ("unregisterProtocolHandler", "function unregisterProtocolHandler() { [native code] }", 1),
    ("productSub", "20030107", 1),
    ("login", "[object NavigatorLogin]", 2),
    ("vendorSub", "", 2),
    ("getInstalledRelatedApps", "function getInstalledRelatedApps() { [native code] }", 4),
    ("webkitGetUserMedia", "function webkitGetUserMedia() { [native code] }", 1),
    ("appName", "Netscape", 1),
    ("presentation", "[object Presentation]", 3),
    ("onLine", "true", 1),
    ("mimeTypes", "[object MimeTypeArray]", 1),
    ("credentials", "[object CredentialsContainer]", 2),
    ("serviceWorker", "[object ServiceWorkerContainer]", 1),
    ("keyboard", "[object Keyboard]", 1),
    ("gpu", "[object GPU]", 1),
    ("webkitPersistentStorage", "[object DeprecatedStorageQuota]", 2),
    ("doNotTrack", None, 1),
    ("clearAppBadge", "function clearAppBadge() { [native code] }", 1),
    ("serial", "[object Serial]", 1),
    ("requestMIDIAccess", "function requestMIDIAccess() { [native code] }", 2),
    (
        "requestMediaKeySystemAccess",
        "function requestMediaKeySystemAccess() { [native code] }",
        1,
    ),
    ("pdfViewerEnabled", "true", 3),
    ("setAppBadge", "function setAppBadge() { [native code] }", 1),
    ("geolocation", "[object Geolocation]", 1),
    ("userAgentData", "[object NavigatorUAData]", 1),
    ("getUserMedia", "function getUserMedia() { [native code] }", 1),
    ("sendBeacon", "function sendBeacon() { [native code] }", 1),
    ("windowControlsOverlay", "[object WindowControlsOverlay]", 1),
    ("scheduling", "[object Scheduling]", 1),
)

#: Own property names of a Chrome ``window`` in enumeration order, then the ChatGPT and
#: Next.js globals (reference Appendix B).  ``sendMsgToSolverCS`` is left out: it comes
#: from a captcha-solver extension and would mark the "browser" as a bot.
WINDOW_KEYS: tuple[str, ...] = tuple(
    """
    0 window self document name location customElements history navigation locationbar menubar
    personalbar scrollbars statusbar toolbar status closed frames length top opener parent
    frameElement navigator origin external screen innerWidth innerHeight scrollX pageXOffset
    scrollY pageYOffset visualViewport screenX screenY outerWidth outerHeight devicePixelRatio
    clientInformation screenLeft screenTop styleMedia onsearch isSecureContext trustedTypes
    performance onappinstalled onbeforeinstallprompt crypto indexedDB sessionStorage
    localStorage onbeforexrselect onabort onbeforeinput onbeforematch onbeforetoggle onblur
    oncancel oncanplay oncanplaythrough onchange onclick onclose
    oncontentvisibilityautostatechange oncontextlost oncontextmenu oncontextrestored oncuechange
    ondblclick ondrag ondragend ondragenter ondragleave ondragover ondragstart ondrop
    ondurationchange onemptied onended onerror onfocus onformdata oninput oninvalid onkeydown
    onkeypress onkeyup onload onloadeddata onloadedmetadata onloadstart onmousedown onmouseenter
    onmouseleave onmousemove onmouseout onmouseover onmouseup onmousewheel onpause onplay
    onplaying onprogress onratechange onreset onresize onscroll onsecuritypolicyviolation
    onseeked onseeking onselect onslotchange onstalled onsubmit onsuspend ontimeupdate ontoggle
    onvolumechange onwaiting onwebkitanimationend onwebkitanimationiteration
    onwebkitanimationstart onwebkittransitionend onwheel onauxclick ongotpointercapture
    onlostpointercapture onpointerdown onpointermove onpointerrawupdate onpointerup
    onpointercancel onpointerover onpointerout onpointerenter onpointerleave onselectstart
    onselectionchange onanimationend onanimationiteration onanimationstart ontransitionrun
    ontransitionstart ontransitionend ontransitioncancel onafterprint onbeforeprint
    onbeforeunload onhashchange onlanguagechange onmessage onmessageerror onoffline ononline
    onpagehide onpageshow onpopstate onrejectionhandled onstorage onunhandledrejection onunload
    crossOriginIsolated scheduler alert atob blur btoa cancelAnimationFrame cancelIdleCallback
    captureEvents clearInterval clearTimeout close confirm createImageBitmap fetch find focus
    getComputedStyle getSelection matchMedia moveBy moveTo open postMessage print prompt
    queueMicrotask releaseEvents reportError requestAnimationFrame requestIdleCallback resizeBy
    resizeTo scroll scrollBy scrollTo setInterval setTimeout stop structuredClone
    webkitCancelAnimationFrame webkitRequestAnimationFrame chrome caches cookieStore
    ondevicemotion ondeviceorientation ondeviceorientationabsolute launchQueue
    documentPictureInPicture getScreenDetails queryLocalFonts showDirectoryPicker
    showOpenFilePicker showSaveFilePicker originAgentCluster onpageswap onpagereveal
    credentialless speechSynthesis onscrollend webkitRequestFileSystem
    webkitResolveLocalFileSystemURL webpackChunk_N_E __next_set_public_path__ next __NEXT_DATA__
    __SSG_MANIFEST_CB __NEXT_P _N_E regeneratorRuntime __REACT_INTL_CONTEXT__ DD_RUM _ filterCSS
    filterXSS __SEGMENT_INSPECTOR__ __NEXT_PRELOADREADY Intercom __MIDDLEWARE_MATCHERS
    __STATSIG_SDK__ __STATSIG_JS_SDK__ __STATSIG_RERENDER_OVERRIDE__ _oaiHandleSessionExpired
    __BUILD_MANIFEST __SSG_MANIFEST __intercomAssignLocation __intercomReloadLocation
    """.split()
)

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, kw_only=True)
class BrowserProfile:
    """One desktop browser: what its headers say and what its scripts can observe.

    ``sec_ch_ua*`` are header values exactly as sent (with their quotes).
    ``timezone`` is an IANA name; ``timezone_names`` are the standard and daylight
    long names Chrome prints in ``Date.prototype.toString()``.
    """

    impersonate: str
    user_agent: str
    sec_ch_ua: str
    sec_ch_ua_mobile: str = "?0"
    sec_ch_ua_platform: str
    screen_width: int
    screen_height: int
    hardware_concurrency: int
    js_heap_size_limit: int
    timezone: str
    timezone_names: tuple[str, str]
    language: str = "en-US"
    languages: tuple[str, ...] = ("en-US", "en")
    vendor: str = "Google Inc."

    def utc_offset(self, now: datetime) -> timedelta:
        """The zone's offset from UTC at the aware instant ``now`` (DST included)."""
        offset = now.astimezone(ZoneInfo(self.timezone)).utcoffset()
        assert offset is not None  # a ZoneInfo always answers
        return offset

    def timezone_offset_min(self, now: datetime) -> int:
        """``new Date().getTimezoneOffset()``: minutes *behind* UTC (300 for UTC-5)."""
        return -int(self.utc_offset(now).total_seconds()) // 60

    def date_string(self, now: datetime) -> str:
        """``new Date().toString()`` in this profile, e.g.
        ``Sat May 17 2025 05:02:36 GMT-0400 (Eastern Daylight Time)``."""
        local = now.astimezone(ZoneInfo(self.timezone))
        offset = local.utcoffset()
        assert offset is not None
        minutes = int(offset.total_seconds()) // 60
        sign = "+" if minutes >= 0 else "-"
        hours, mins = divmod(abs(minutes), 60)
        name = self.timezone_names[1] if local.dst() else self.timezone_names[0]
        return (
            f"{_WEEKDAYS[local.weekday()]} {_MONTHS[local.month - 1]} {local.day:02d} "
            f"{local.year:04d} {local:%H:%M:%S} GMT{sign}{hours:02d}{mins:02d} ({name})"
        )

    def navigator_probes(self) -> tuple[str, ...]:
        """The weighted population of navigator probes (config element 10).

        Every entry is true of this browser: the ``language`` and
        ``hardwareConcurrency`` probes equal config elements 7 and 16, and the
        ``vendor`` probe exists only for a Chrome vendor string.
        """
        return _probes(self)

    def _build_probes(self) -> tuple[str, ...]:
        entries: list[tuple[str, str | None, int]] = list(NAVIGATOR_KEYS)
        entries.append(("language", self.language, 1))
        entries.append(("hardwareConcurrency", str(self.hardware_concurrency), 2))
        if self.vendor == "Google Inc.":
            entries.append(("vendor", self.vendor, 4))
        return tuple(
            name if value is None else f"{name}{MINUS}{value}"
            for name, value, weight in entries
            for _ in range(weight)
        )

    def client_hint_headers(self) -> dict[str, str]:
        """The identity headers of this browser (as curl_cffi sends for the target).

        A browser without client hints (a non-Chromium user agent from
        ``USER_AGENTS``) sends only its user agent."""
        if not self.sec_ch_ua:
            return {"user-agent": self.user_agent}
        return {
            "user-agent": self.user_agent,
            "sec-ch-ua": self.sec_ch_ua,
            "sec-ch-ua-mobile": self.sec_ch_ua_mobile,
            "sec-ch-ua-platform": self.sec_ch_ua_platform,
        }


@dataclass(frozen=True)
class _Chrome:
    """What curl_cffi sends for one of its (macOS) Chrome targets."""

    version: int
    sec_ch_ua: str


_EASTERN = ("America/New_York", ("Eastern Standard Time", "Eastern Daylight Time"))
_CENTRAL = ("America/Chicago", ("Central Standard Time", "Central Daylight Time"))
_MOUNTAIN = ("America/Denver", ("Mountain Standard Time", "Mountain Daylight Time"))
_PACIFIC = ("America/Los_Angeles", ("Pacific Standard Time", "Pacific Daylight Time"))

_CHROME131 = _Chrome(131, '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"')
_CHROME136 = _Chrome(136, '"Chromium";v="136", "Google Chrome";v="136", "Not.A/Brand";v="99"')
_CHROME142 = _Chrome(142, '"Chromium";v="142", "Google Chrome";v="142", "Not_A Brand";v="99"')

# jsHeapSizeLimit: 4294705152 is what 64-bit Chrome reported for years
# (docs/sentinel.md#classic-config);
# aurora uses 4294967296 for its 2026 configs.  Which Chrome version switched is not
# known, so the newer value is given only to the newest target.
_HEAP_CLASSIC = 4294705152
_HEAP_2026 = 4294967296


def _profile(
    chrome: _Chrome,
    size: tuple[int, int],
    cores: int,
    heap: int,
    zone: tuple[str, tuple[str, str]],
) -> BrowserProfile:
    return BrowserProfile(
        impersonate=f"chrome{chrome.version}",
        user_agent=(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
            f"(KHTML, like Gecko) Chrome/{chrome.version}.0.0.0 Safari/537.36"
        ),
        sec_ch_ua=chrome.sec_ch_ua,
        sec_ch_ua_platform='"macOS"',
        screen_width=size[0],
        screen_height=size[1],
        hardware_concurrency=cores,
        js_heap_size_limit=heap,
        timezone=zone[0],
        timezone_names=zone[1],
    )


#: Mac screens (built-in Retina panels in points, and common external displays) with
#: core counts of Apple-silicon and Intel Macs.
PROFILES: tuple[BrowserProfile, ...] = (
    _profile(_CHROME131, (1440, 900), 8, _HEAP_CLASSIC, _EASTERN),
    _profile(_CHROME131, (1920, 1080), 8, _HEAP_CLASSIC, _PACIFIC),
    _profile(_CHROME136, (1512, 982), 10, _HEAP_CLASSIC, _PACIFIC),
    _profile(_CHROME136, (2560, 1440), 12, _HEAP_CLASSIC, _CENTRAL),
    _profile(_CHROME142, (1728, 1117), 12, _HEAP_2026, _EASTERN),
    _profile(_CHROME142, (1470, 956), 8, _HEAP_2026, _MOUNTAIN),
)


def pick_profile(
    rng: random.Random, profiles: tuple[BrowserProfile, ...] = PROFILES
) -> BrowserProfile:
    """A random profile (callers keep one per account, so an account stays one browser)."""
    return rng.choice(profiles)


@functools.lru_cache(maxsize=256)
def _probes(profile: BrowserProfile) -> tuple[str, ...]:
    # A profile is immutable and there are few of them: one tuple each (per config).
    return profile._build_probes()
