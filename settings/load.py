"""Reading ``config.yaml`` and the environment into :class:`Settings`."""

from __future__ import annotations

import ast
import dataclasses
import difflib
import ipaddress
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from settings.allow_list import parse_allow_rules
from settings.ban_list import parse_ban_rules
from settings.codex_models import parse_codex_model_table
from settings.host_names import split_host
from settings.model_table import parse_model_table
from settings.schema import Settings, Timeouts


class SettingsError(ValueError):
    """A setting has a bad value; the message names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"setting {key.upper()} ({key}): {message}")
        self.key = key


_TRUE = {"true", "1", "t", "y", "yes", "on"}
_FALSE = {"false", "0", "f", "n", "no", "off", ""}


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _parse_int(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
        if not lo <= number <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {number}")
        return number

    return parse


def _parse_seconds(value: Any) -> float:
    try:
        seconds = float(str(value).strip())
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if not 0 < seconds <= 86400:
        raise ValueError(f"must be between 0 and 86400 seconds, got {seconds}")
    return seconds


def _parse_list(value: Any) -> tuple[str, ...]:
    """A YAML list, or a comma-separated string (the original's env format)."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(s for s in (str(item).strip() for item in items) if s)


def _parse_literal_list(value: Any) -> tuple[str, ...]:
    """A YAML list, a Python literal list or tuple (the original's format for
    ``IMPERSONATE``, ``USER_AGENTS`` and ``*_TUPLE``), or a comma-separated string."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "("):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ValueError(f"expected a list such as ['a', 'b'], got {value!r}") from None
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("expected a list of strings")
    if isinstance(value, list):
        return tuple(s for s in (str(v).strip() for v in value) if s)
    return _parse_list(value)


def _parse_impersonate(value: Any) -> tuple[str, ...]:
    targets = _parse_literal_list(value)
    from curl_cffi.requests import BrowserType  # a library below us, not a package above

    known = {b.value for b in BrowserType}
    unknown = [t for t in targets if t not in known]
    if unknown:
        known_list = ", ".join(sorted(known))
        raise ValueError(
            f"curl_cffi cannot impersonate {', '.join(unknown)}; it knows {known_list}"
        )
    return targets


def _parse_optional_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _parse_str(value: Any) -> str:
    text = _parse_optional_str(value)
    if text is None:
        raise ValueError("must not be empty")
    return text


def _parse_host(value: Any) -> str:
    text = _parse_str(value)
    if text == "localhost":
        return text
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"expected an IP address to listen on, got {text!r}") from None
    return text


def _parse_url(value: Any) -> str:
    text = _parse_str(value).rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s) URL, got {text!r}")
    return text


def _parse_host_url(value: Any) -> str:
    """An http(s) URL, or a bare host name as the original's FILE_HOST took (https)."""
    text = _parse_str(value)
    return _parse_url(text if "://" in text else "https://" + text)


def _parse_urls(value: Any) -> tuple[str, ...]:
    urls = tuple(_parse_url(item) for item in _parse_list(value))
    if not urls:
        raise ValueError("at least one URL is required")
    return urls


def _parse_proxies(value: Any) -> tuple[str, ...]:
    proxies = _parse_list(value)
    for proxy in proxies:
        if urlsplit(proxy).scheme not in ("http", "https", "socks5", "socks5h", "socks4"):
            raise ValueError(f"expected an http(s) or socks proxy URL, got {proxy!r}")
    return proxies


def _parse_optional_proxy(value: Any) -> str | None:
    text = _parse_optional_str(value)
    return _parse_proxies(text)[0] if text else None


def _parse_hex(value: Any) -> str:
    text = _parse_str(value).lower()
    if not re.fullmatch(r"[0-9a-f]{2,16}", text) or len(text) % 2:
        raise ValueError(f"expected an even number of hex digits such as 000032, got {text!r}")
    return text


def _parse_redis_url(value: Any) -> str | None:
    text = _parse_optional_str(value)
    if text is None:
        return None
    parts = urlsplit(text)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"expected unix:///path/to/redis.sock, got {text!r}")
    elif parts.scheme not in ("redis", "rediss") or not parts.hostname:
        shown = _USERINFO.sub(r"\1***@", text)
        raise ValueError(
            f"expected redis://HOST:PORT/DB, rediss://HOST:PORT/DB or unix:///PATH, got {shown!r}"
        )
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ValueError("the port is not a number from 0 to 65535") from None
    return text


def _parse_redis_prefix(value: Any) -> str:
    text = _parse_str(value)
    if not re.fullmatch(r"[A-Za-z0-9._:{}-]{1,64}", text):
        raise ValueError("expected 1 to 64 letters, digits, '.', '_', ':', '{', '}', '-'")
    return text


def _parse_prefix(value: Any) -> str | None:
    text = _parse_optional_str(value)
    if text is None:
        return None
    text = text.strip("/")
    if not re.fullmatch(r"[A-Za-z0-9._~-]+", text):
        raise ValueError("must be a single path segment of letters, digits, '.', '_', '~', '-'")
    return text


def _one_of(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return text

    return parse


def _parse_on_off(value: Any) -> str:
    # YAML reads a bare on/off as a boolean.
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value).strip().lower()
    if text in ("on", "true", "1", "yes"):
        return "on"
    if text in ("off", "false", "0", "no"):
        return "off"
    raise ValueError(f"must be on or off, not {value!r}")


def _parse_hosts(value: Any) -> tuple[str, ...]:
    hosts = tuple(h.lower() for h in _parse_list(value))
    for host in hosts:
        if not re.fullmatch(r"([a-z0-9.-]+|\[[0-9a-f:.]+\])(:\d+)?", host):
            raise ValueError(f"expected host names, got {host!r}")
    return hosts


def _parse_proxy_auth(value: Any) -> str | None:
    text = _parse_optional_str(value)
    if text is not None and (":" not in text or text.startswith(":")):
        raise ValueError("expected user:password")
    return text


def _parse_schedule(value: Any) -> str:
    text = _parse_str(value)
    if not re.fullmatch(r"every \d+ days? at \d{1,2}:\d{2}", text):
        raise ValueError(f"expected 'every N days at HH:MM', got {text!r}")
    return text


def _parse_ban_list(value: Any) -> tuple[str, ...]:
    # Comma-separated in the environment would split regexes like {1,3}: a YAML
    # list there, or one entry per line in the environment variable.
    if isinstance(value, list):
        entries = tuple(str(item).strip() for item in value if str(item).strip())
    else:
        entries = tuple(s.strip() for s in str(value or "").splitlines() if s.strip())
    parse_ban_rules(entries)  # the mirror parses them again when it is built; this validates
    return entries


def _parse_allow_list(value: Any) -> tuple[str, ...]:
    # One entry per line in the environment, like the ban list (regexes hold commas).
    if isinstance(value, list):
        entries = tuple(str(item).strip() for item in value if str(item).strip())
    else:
        entries = tuple(s.strip() for s in str(value or "").splitlines() if s.strip())
    parse_allow_rules(entries)  # the mirror parses them again when it is built
    return entries


def _parse_gateway_hosts(value: Any) -> tuple[str, ...]:
    hosts = tuple(h.lower() for h in _parse_list(value))
    for host in hosts:
        if split_host(host) is None:
            raise ValueError(f"expected host names or addresses (optionally :port), got {host!r}")
    return hosts


def _parse_origins(value: Any) -> tuple[str, ...]:
    origins = tuple(o.rstrip("/") for o in _parse_list(value))
    for origin in origins:
        parts = urlsplit(origin)
        if origin != "*" and (
            parts.scheme not in ("http", "https") or not parts.netloc or parts.path
        ):
            raise ValueError(f"expected * or origins such as https://app.example, got {origin!r}")
    return origins


# key → parser. Keys are the config.yaml names; environment names are upper case.
_PARSERS: dict[str, Callable[[Any], Any]] = {
    "host": _parse_host,
    "proxy_port": _parse_int(0, 65535),
    "port": _parse_int(0, 65535),
    "confdir": _parse_str,
    "data_dir": _parse_str,
    "redis_url": _parse_redis_url,
    "redis_prefix": _parse_redis_prefix,
    "intercept_hosts": _parse_hosts,
    "mitm_patches": _parse_on_off,
    "proxy_allow_hosts": _parse_hosts,
    "proxy_auth": _parse_proxy_auth,
    "header_timeout": _parse_seconds,
    "connections_per_address": _parse_int(1, 1_000_000),
    "api_prefix": _parse_prefix,
    "authorization": _parse_list,
    "admin_key": _parse_optional_str,
    "auth_key": _parse_optional_str,
    "metrics_key": _parse_optional_str,
    "cors_origins": _parse_origins,
    "auth_refresh_open": parse_bool,
    "auth_refresh_per_minute": _parse_int(1, 10000),
    "log_format": _one_of("text", "json"),
    "chatgpt_base_url": _parse_urls,
    "proxy_url": _parse_proxies,
    "export_proxy_url": _parse_optional_proxy,
    "sentinel_proxy_url": _parse_proxies,
    "cf_file_url": lambda v: _parse_url(v) if _parse_optional_str(v) else None,
    "arkose_token_url": lambda v: tuple(_parse_url(u) for u in _parse_list(v)),
    "turnstile_solver_url": lambda v: _parse_url(v) if _parse_optional_str(v) else None,
    "impersonate": _parse_impersonate,
    "user_agents": _parse_literal_list,
    "device_tuple": _parse_literal_list,
    "browser_tuple": _parse_literal_list,
    "platform_tuple": _parse_literal_list,
    "backend_dialect": _one_of("classic", "2026", "auto"),
    "pow_algorithm": _one_of("auto", "sha3", "fnv1a"),
    "resume_attempts": _parse_int(0, 50),
    "oai_language": _parse_str,
    "history_disabled": parse_bool,
    "pow_difficulty": _parse_hex,
    "retry_times": _parse_int(0, 20),
    "conversation_only": parse_bool,
    "enable_limit": parse_bool,
    "upload_by_url": parse_bool,
    "random_token": parse_bool,
    "allow_anonymous": parse_bool,
    "reasoning_inline": parse_bool,
    "unknown_model": _one_of("default", "reject"),
    "on_downgrade": _one_of("pass", "error", "retry"),
    "max_body_bytes": _parse_int(1024, 1024 * 1024 * 1024),
    "models": parse_model_table,
    "codex_backend": _one_of("auto", "always", "never"),
    "codex_models": parse_codex_model_table,
    "responses_ttl": _parse_int(60, 366 * 24 * 3600),
    "media_max_bytes": _parse_int(1024, 1024 * 1024 * 1024),
    "media_fetch_timeout": _parse_seconds,
    "media_allow_hosts": _parse_hosts,
    "media_async_timeout": _parse_seconds,
    "media_poll_interval": _parse_seconds,
    "scheduled_refresh": parse_bool,
    "refresh_schedule": _parse_schedule,
    "refresh_url": _parse_url,
    "refresh_client_id": _parse_str,
    "refresh_redirect_uri": _parse_str,
    "enable_gateway": parse_bool,
    "auto_seed": parse_bool,
    "gateway_blocked_paths": _parse_ban_list,
    "gateway_allowed_paths": _parse_allow_list,
    "gateway_hosts": _parse_gateway_hosts,
    "auto_seed_limit": _parse_int(0, 10**9),
    "gateway_new_seeds_per_hour": _parse_int(0, 10**6),
    "gateway_signin_refreshes_per_hour": _parse_int(0, 10**6),
    "gateway_assets_url": _parse_url,
    "gateway_files_url": _parse_url,
    "gateway_sandbox_url": _parse_url,
    "gateway_statsig_url": _parse_url,
    "force_no_history": parse_bool,
    "no_sentinel": parse_bool,
    "x_sign": _parse_optional_str,
    "file_host": lambda v: _parse_host_url(v) if _parse_optional_str(v) else None,
    "voice_host": lambda v: _parse_host_url(v) if _parse_optional_str(v) else None,
    "timeout_connect": _parse_seconds,
    "timeout_first_byte": _parse_seconds,
    "timeout_idle": _parse_seconds,
    "timeout_total": _parse_seconds,
}

KNOWN_KEYS = frozenset(_PARSERS)

#: Other names the original read for a setting: environment name -> key.
ALIASES = {"ARK0SE_TOKEN_URL": "arkose_token_url"}

#: Variables the original read that change nothing here, and why.
NO_EFFECT = {
    "CHECK_MODEL": "it was read but unused in the original too",
}

#: Environment variables that are not settings but look like them; never warned about.
_NOT_SETTINGS_PREFIXES = ("CHAT2API_", "C2A_", "PYTHON", "MITMPROXY", "SSL_", "REQUESTS_")


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a ``.env`` file (``export``, quotes and comments allowed).

    The original read its ``.env`` at start-up; variables set in the real
    environment win over it."""
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return out
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError("config", f"cannot read {path}: {e}") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise SettingsError("config", f"{path}:{n}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[key] = value
    return out


def _environment_notes(env: Mapping[str, str]) -> list[str]:
    """Warnings for variables that look like a setting but are none."""
    names = sorted({k.upper() for k in KNOWN_KEYS} | set(ALIASES))
    notes: list[str] = []
    for var in sorted(env):
        if var in NO_EFFECT:
            notes.append(f"{var} is set but has no effect: {NO_EFFECT[var]}")
            continue
        if var in ALIASES or var.lower() in KNOWN_KEYS or var != var.upper():
            continue
        if var.startswith(_NOT_SETTINGS_PREFIXES):
            continue
        close = difflib.get_close_matches(var, names, n=1, cutoff=0.85)
        if close:
            notes.append(f"{var} is not a setting; did you mean {close[0]}?")
    return notes


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (if given and present), apply ``env`` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None and Path(path).exists():
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise SettingsError("config", f"{path} is not valid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise SettingsError("config", f"{path} must hold a mapping of settings")
        for key, value in loaded.items():
            if key not in KNOWN_KEYS:
                raise SettingsError(str(key), f"unknown setting in {path}")
            raw[key] = value
    merged: dict[str, str] = {}
    if path is not None:
        merged.update(read_dotenv(Path(path).parent / ".env"))
    if env is not None:
        merged.update(env)
    for alias, key in ALIASES.items():
        if alias in merged and key.upper() not in merged:
            raw[key] = merged[alias]
    for key in KNOWN_KEYS:
        if key.upper() in merged:
            raw[key] = merged[key.upper()]

    values: dict[str, Any] = {}
    timeouts: dict[str, float] = {}
    for key, value in raw.items():
        try:
            parsed = _PARSERS[key](value)
        except ValueError as e:
            raise SettingsError(key, str(e)) from None
        if key.startswith("timeout_"):
            timeouts[key.removeprefix("timeout_")] = parsed
        else:
            values[key] = parsed
    if timeouts:
        values["timeouts"] = Timeouts(**timeouts)
    values["warnings"] = tuple(_environment_notes(merged))
    settings = Settings(**values)
    _check_consistency(settings)
    return settings


def _check_consistency(s: Settings) -> None:
    if s.port and s.proxy_port and s.port == s.proxy_port:
        raise SettingsError("port", "PORT and PROXY_PORT must differ")
    if s.enable_gateway and not (s.authorization or s.admin_key):
        # Not fatal in the original, but then nobody can manage the pool or seeds.
        pass


def describe(settings: Settings) -> dict[str, Any]:
    """The settings as plain data with every secret masked, for logs."""
    secret = {"authorization", "admin_key", "auth_key", "api_prefix", "proxy_auth"}
    secret = {"authorization", "admin_key", "auth_key", "api_prefix", "metrics_key"}
    secret = {"authorization", "admin_key", "auth_key", "api_prefix", "x_sign"}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name in ("models", "codex_models", "warnings"):
            continue
        if f.name in secret and value:
            value = f"<{len(value) if isinstance(value, tuple) else 1} set>"
        elif isinstance(value, str):
            value = _USERINFO.sub(r"\1***@", value)
        elif isinstance(value, tuple):
            value = tuple(_USERINFO.sub(r"\1***@", v) if isinstance(v, str) else v for v in value)
        out[f.name] = value
    return out


# The user:password@ part of a URL (proxy credentials).
_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)
