"""Local answers that stand in for the backend (docs/mirror.md#stubs).

Seed users share a real account, so the endpoints that describe that account answer
a fixed, neutral identity instead: nothing in them comes from the real account. The
telemetry stubs answer everyone and keep the browser's telemetry off the network.
"""

from __future__ import annotations

import json
from typing import Any

STUB_USER_ID = "user-chatgpt"
STUB_ACCOUNT_ID = "chatgpt"
_CREATED = 1_700_000_000
_ORG: dict[str, Any] = {
    "object": "organization",
    "id": "org-chatgpt",
    "created": _CREATED,
    "title": "Personal",
    "name": STUB_USER_ID,
    "description": "Personal org for chatgpt@openai.com",
    "personal": True,
    "settings": {},
    "parent_org_id": None,
    "is_default": True,
    "role": "owner",
    "is_scale_tier_authorized_purchaser": None,
    "is_scim_managed": False,
    "projects": {"object": "list", "data": []},
    "groups": [],
    "geography": None,
}
ME: dict[str, Any] = {
    "object": "user",
    "id": STUB_USER_ID,
    "email": "chatgpt@openai.com",
    "name": "ChatGPT",
    "picture": None,
    "created": _CREATED,
    "phone_number": None,
    "mfa_flag_enabled": False,
    "amr": [],
    "groups": [],
    "orgs": {"object": "list", "data": [_ORG]},
    "has_payg_project_spend_limit": None,
}
_FEATURES = ["gizmo_ui", "gizmo_live", "shareable_links", "starter_prompts"]
ACCOUNTS_CHECK: dict[str, Any] = {
    "accounts": {
        "default": {
            "account": {
                "account_id": STUB_ACCOUNT_ID,
                "account_user_id": f"{STUB_USER_ID}__{STUB_ACCOUNT_ID}",
                "account_user_role": "account-owner",
                "plan_type": "plus",
                "structure": "personal",
                "is_deactivated": False,
                "name": None,
                "profile_picture_url": None,
            },
            "features": _FEATURES,
            "entitlement": {
                "subscription_id": None,
                "has_active_subscription": True,
                "subscription_plan": "chatgptplusplan",
                "expires_at": "2099-01-01T00:00:00+00:00",
            },
            "last_active_subscription": None,
        }
    },
    "account_ordering": ["default"],
}
SUBSCRIPTION: dict[str, Any] = {
    "id": "00000000-0000-0000-0000-000000000000",
    "plan_type": "plus",
    "seats_in_use": 1,
    "seats_entitled": 1,
    "active_until": "2099-01-01T00:00:00Z",
    "billing_period": None,
    "will_renew": True,
    "non_profit_org_discount_applied": None,
    "billing_currency": "USD",
    "is_delinquent": False,
    "became_delinquent_timestamp": None,
    "grace_period_end_timestamp": None,
}
USER_SYSTEM_MESSAGE: dict[str, Any] = {
    "object": "user_system_message_detail",
    "enabled": True,
    "about_user_message": "",
    "about_model_message": "",
    "name_user_message": "",
    "role_user_message": "",
    "traits_model_message": "",
    "other_user_message": "",
    "disabled_tools": [],
}

# (method, canonical path) → JSON for seed users. Matched on the canonical path, so
# path tricks cannot step around them (the bans behind them catch everything else).
SEED_STUBS: dict[tuple[str, str], Any] = {
    ("GET", "/backend-api/me"): ME,
    ("GET", "/backend-api/accounts/check"): ACCOUNTS_CHECK,
    ("GET", "/backend-api/accounts/check/v4-2023-04-27"): ACCOUNTS_CHECK,
    ("GET", "/backend-api/subscriptions"): SUBSCRIPTION,
    ("GET", "/backend-api/tasks"): {"tasks": [], "cursor": None},
    ("GET", "/backend-api/user_system_messages"): USER_SYSTEM_MESSAGE,
    ("GET", "/backend-api/memories"): {
        "memories": [],
        "memory_max_tokens": 10000,
        "memory_num_tokens": 0,
    },
    ("GET", "/backend-api/gizmos/bootstrap"): {"gizmos": []},
    ("GET", "/backend-api/gizmos/pinned"): {"items": [], "cursor": None},
    ("GET", "/backend-api/gizmos/snorlax/sidebar"): {"items": [], "cursor": None},
    ("GET", "/public-api/gizmos/discovery/recent"): {
        "info": {"id": "recent", "title": "Recently Used"},
        "list": {"items": [], "cursor": None},
    },
}

# Telemetry, for everyone: (method, canonical path or prefix ending in "/") → (status, JSON).
TELEMETRY: dict[tuple[str, str], tuple[int, Any]] = {
    ("POST", "/backend-api/edge"): (204, None),
    ("POST", "/ab/v1/rgstr"): (202, {"success": True}),
    ("POST", "/ab/v1/log_event"): (202, {"success": True}),
    ("POST", "/ces/statsc/flush"): (200, {"success": True}),
    ("POST", "/ces/v1/"): (202, {"success": True}),
    ("GET", "/ces/v1/projects/oai/settings"): (
        200,
        {"integrations": {"Segment.io": {"apiHost": "", "apiKey": "oai"}}},
    ),
}


def telemetry(method: str, path: str) -> tuple[int, Any] | None:
    answer = TELEMETRY.get((method, path))
    if answer is not None:
        return answer
    for (m, prefix), value in TELEMETRY.items():
        if m == method and prefix.endswith("/") and path.startswith(prefix):
            return value
    return None


def session(access_token: str) -> dict[str, Any]:
    """``/api/auth/session``: where the site's front-end reads its bearer. The bearer
    handed out is the gateway's session marker, never a real token."""
    return {
        "user": {
            "id": STUB_USER_ID,
            "name": "ChatGPT",
            "email": "chatgpt@openai.com",
            "image": None,
            "picture": None,
            "idp": "auth0",
            "iat": _CREATED,
            "mfa": False,
            "groups": [],
            "intercom_hash": "",
        },
        "expires": "2099-01-01T00:00:00.000Z",
        "accessToken": access_token,
        "authProvider": "auth0",
    }


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()
