"""The typed settings object: what every other module reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Dialect = Literal["classic", "2026", "auto"]
UnknownModel = Literal["default", "reject"]


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
    intercept_hosts: tuple[str, ...] = ("api.openai.com",)
    # security
    api_prefix: str | None = None
    authorization: tuple[str, ...] = ()
    admin_key: str | None = None
    auth_key: str | None = None
    # upstream
    chatgpt_base_url: tuple[str, ...] = ("https://chatgpt.com",)
    proxy_url: tuple[str, ...] = ()
    export_proxy_url: str | None = None
    backend_dialect: Dialect = "classic"
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
    max_body_bytes: int = 25 * 1024 * 1024
    models: Any = None
    # accounts
    scheduled_refresh: bool = False
    refresh_schedule: str = "every 2 days at 03:00"
    refresh_url: str = "https://auth0.openai.com/oauth/token"
    refresh_client_id: str = "pdlLIX2Y72MIl2rhLhTE9VV9bN905kBh"
    refresh_redirect_uri: str = "com.openai.chat://auth0.openai.com/ios/com.openai.chat/callback"
    # mirror
    enable_gateway: bool = False
    auto_seed: bool = True

    @property
    def api_root(self) -> str:
        """The path every API route lives under: ``/v1`` or ``/<prefix>/v1``."""
        return f"/{self.api_prefix}/v1" if self.api_prefix else "/v1"
