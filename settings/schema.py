"""The typed settings object: what every other module reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from settings.codex_models import parse_codex_model_table
from settings.model_table import ModelTable, parse_model_table

Dialect = Literal["classic", "2026", "auto"]
PowAlgorithm = Literal["auto", "sha3", "fnv1a"]
UnknownModel = Literal["default", "reject"]
OnOff = Literal["on", "off"]
LogFormat = Literal["text", "json"]
OnDowngrade = Literal["pass", "error", "retry"]
CodexBackend = Literal["auto", "always", "never"]


# The mirror's ban list for seed users: the original's (docs/mirror.md#ban-list), plus writes to the
# account's
# settings and profile, and the endpoints that list every conversation or share of
# the shared account. Regexes matched at the start of the canonical path (no leading
# "/"); "write:" limits an entry to methods other than GET, HEAD and OPTIONS.
DEFAULT_GATEWAY_BLOCKED_PATHS: tuple[str, ...] = (
    "backend-api/accounts/logout_all",
    "backend-api/accounts/deactivate",
    "backend-api/payments",
    "backend-api/subscriptions",
    "backend-api/user_system_messages",
    "backend-api/memories",
    "backend-api/settings/clear_account_user_memory",
    "backend-api/conversations/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "backend-api/accounts/mfa_info",
    "backend-api/accounts/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/invites",
    "admin",
    "write:backend-api/settings",
    "write:backend-api/accounts",
    "write:backend-api/me",
    "write:backend-api/conversations",
    "backend-api/conversations/search",
    "backend-api/shared_conversations",
)


_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

# What a seed user may reach on the backend (mirror/router.py, fail closed): the path
# families the site calls for a conversation turn, its own conversations and list,
# models, files and GPT pages (docs/mirror-security.md). Regexes matched against the
# whole canonical path (no leading "/"; any /backend-… prefix reads as backend-api);
# "read:" limits an entry to GET, HEAD and OPTIONS.
DEFAULT_GATEWAY_ALLOWED_PATHS: tuple[str, ...] = (
    "backend-api/sentinel/.+",
    "backend-api/(f/)?conversation",
    "backend-api/f/conversation/(prepare|resume)",
    "backend-api/conversation/init",
    f"backend-api/(f/)?conversation/(gen_title/)?{_UUID}(/.*)?",
    "read:backend-api/conversations",
    "read:backend-api/models",
    "backend-api/files(/.*)?",
    "read:backend-api/gizmos/g-(?!p-)[^/]+",
)


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """Backend call limits, in seconds."""

    connect: float = 10.0
    first_byte: float = 60.0
    idle: float = 60.0
    total: float = 600.0


@dataclass(frozen=True, kw_only=True)
class Settings:
    # listeners and files
    host: str = "127.0.0.1"
    proxy_port: int = 8080
    port: int = 5005
    confdir: str = "~/.mitmproxy"
    data_dir: str = "./data"
    # shared state for several instances (accounts/redisstore.py); None = files in data_dir
    redis_url: str | None = None
    redis_prefix: str = "chat2api"
    intercept_hosts: tuple[str, ...] = ("api.openai.com",)
    # patches of mitmproxy's, pyOpenSSL's and curl_cffi's internals (patches/); off = stock
    mitm_patches: OnOff = "on"
    # the HTTPS-proxy listener (service/shield.py): local destinations allowed anyway,
    # and the Basic credentials ("user:pass") clients must send; None = none needed
    proxy_allow_hosts: tuple[str, ...] = ()
    proxy_auth: str | None = None
    # both listeners: seconds to a complete request head; open connections per address
    header_timeout: float = 10.0
    connections_per_address: int = 256
    # security
    api_prefix: str | None = None
    authorization: tuple[str, ...] = ()
    admin_key: str | None = None
    auth_key: str | None = None
    # GET /metrics: this key, or admin_key (ops/metrics.py)
    metrics_key: str | None = None
    # origins allowed to call the API from a browser; () = no CORS (ops/cors.py)
    cors_origins: tuple[str, ...] = ("*",)
    # POST /auth/refresh without a key (rate-limited per client address)
    auth_refresh_open: bool = False
    auth_refresh_per_minute: int = 10
    # operations
    log_format: LogFormat = "text"
    # upstream
    chatgpt_base_url: tuple[str, ...] = ("https://chatgpt.com",)
    proxy_url: tuple[str, ...] = ()
    export_proxy_url: str | None = None
    # proxies for the chat-requirements (sentinel) calls only; empty: proxy_url
    sentinel_proxy_url: tuple[str, ...] = ()
    # an external fetcher for file URLs: POST {"file_url": url} (the original's CF_FILE_URL)
    cf_file_url: str | None = None
    # solvers the sentinel may ask for (the original's request and answer shapes)
    arkose_token_url: tuple[str, ...] = ()
    turnstile_solver_url: str | None = None
    # browser choice (pow/browsers.py): curl_cffi targets, fixed user agents, filters
    impersonate: tuple[str, ...] = ()
    user_agents: tuple[str, ...] = ()
    device_tuple: tuple[str, ...] = ()
    browser_tuple: tuple[str, ...] = ()
    platform_tuple: tuple[str, ...] = ()
    backend_dialect: Dialect = "classic"
    # the hash of proof-of-work challenges; auto = the dialect's own (classic sha3, 2026 fnv1a)
    pow_algorithm: PowAlgorithm = "auto"
    # resumes in a row that bring nothing new before a broken 2026 stream is given up; 0 = never
    resume_attempts: int = 5
    oai_language: str = "en-US"
    timeouts: Timeouts = field(default_factory=Timeouts)
    # behaviour
    history_disabled: bool = True
    pow_difficulty: str = "000032"
    retry_times: int = 3
    conversation_only: bool = False
    enable_limit: bool = True
    upload_by_url: bool = False
    random_token: bool = True
    allow_anonymous: bool = True
    reasoning_inline: bool = False
    unknown_model: UnknownModel = "default"
    # ChatGPT answered with another model than the one asked for: pass it on
    # (reported as such), refuse it, or retry on another pool account
    on_downgrade: OnDowngrade = "pass"
    max_body_bytes: int = 25 * 1024 * 1024
    # media (service/uploads.py, service/media.py)
    media_max_bytes: int = 20 * 1024 * 1024
    media_fetch_timeout: float = 30.0
    media_allow_hosts: tuple[str, ...] = ()
    media_async_timeout: float = 300.0
    media_poll_interval: float = 2.0
    models: ModelTable = field(default_factory=lambda: parse_model_table(None))
    # the Codex backend (upstream/codex.py): auto, always or never; its model table
    codex_backend: CodexBackend = "auto"
    codex_models: ModelTable = field(default_factory=lambda: parse_codex_model_table(None))
    # stored responses (service/responsestore.py) are kept this many seconds
    responses_ttl: int = 30 * 24 * 3600
    # accounts
    scheduled_refresh: bool = False
    refresh_schedule: str = "every 2 days at 03:00"
    refresh_url: str = "https://auth0.openai.com/oauth/token"
    refresh_client_id: str = "pdlLIX2Y72MIl2rhLhTE9VV9bN905kBh"
    refresh_redirect_uri: str = "com.openai.chat://auth0.openai.com/ios/com.openai.chat/callback"
    # mirror
    enable_gateway: bool = False
    auto_seed: bool = True
    gateway_blocked_paths: tuple[str, ...] = DEFAULT_GATEWAY_BLOCKED_PATHS
    gateway_allowed_paths: tuple[str, ...] = DEFAULT_GATEWAY_ALLOWED_PATHS
    # the Host names the mirror answers to; () = HOST, localhost, 127.0.0.1 and ::1
    gateway_hosts: tuple[str, ...] = ()
    # seeds that may exist before auto_seed stops making new ones; 0 = no cap
    auto_seed_limit: int = 100
    # per client address and hour; 0 = no limit
    gateway_new_seeds_per_hour: int = 10
    gateway_signin_refreshes_per_hour: int = 10
    gateway_assets_url: str = "https://cdn.oaistatic.com"
    gateway_files_url: str = "https://files.oaiusercontent.com"
    gateway_sandbox_url: str = "https://web-sandbox.oaiusercontent.com"
    gateway_statsig_url: str = "https://ab.chatgpt.com"
    # the original's mirror switches
    force_no_history: bool = False
    no_sentinel: bool = False
    x_sign: str | None = None
    file_host: str | None = None
    voice_host: str | None = None
    # start-up notes about the environment (unknown look-alike variables, ...)
    warnings: tuple[str, ...] = ()

    @property
    def api_root(self) -> str:
        """The path every API route lives under: ``/v1`` or ``/<prefix>/v1``."""
        return f"/{self.api_prefix}/v1" if self.api_prefix else "/v1"
