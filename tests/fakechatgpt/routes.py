"""Request routing: the backend API under /backend-api and /backend-anon, OAuth, blobs, and the
`/_fake/*` test-control endpoints. Conversation and sentinel logic lives in `conversation.py`.

Every request except `/_fake/*` is recorded in the request log (`GET /_fake/requests`).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from . import faults, site
from .codex import Codex
from .conversation import Conversations, Sentinel, detail
from .http11 import Request, Response, json_response
from .state import FAKE_PNG, State
from .tokens import (
    AUTH_CLAIM,
    MSG_BAD_TOKEN,
    MSG_MISSING,
    TokenError,
    check_access_token,
    mint_access_token,
)
from .validation import Invalid, missing, parse_json_body

log = logging.getLogger(__name__)

Entry = dict[str, Any]
Match = re.Match[str]

MODELS = [
    "auto", "gpt-4o", "gpt-4o-mini", "gpt-4-5", "o1", "o1-mini", "o1-pro", "o3", "o3-mini",
    "o3-mini-high", "o4-mini", "o4-mini-high", "gpt-5", "gpt-5-thinking", "gpt-5-2",
    "gpt-5-2-thinking", "gpt-5-3", "text-davinci-002-render-sha",
]  # fmt: skip
CLASSIC_ONLY = {"sentinel/chat-requirements", "conversation"}
ONLY_2026 = {
    "sentinel/chat-requirements/prepare",
    "sentinel/chat-requirements/finalize",
    "f/conversation/prepare",
    "f/conversation",
    "f/conversation/resume",
    "conversation/init",
    "celsius/ws/user",
}
ACCOUNT_FEATURES = [
    "chat_preferences_available", "allow_url_thread_creation", "shareable_links", "gizmo_ui",
    "gizmo_live", "starter_prompts", "user_settings_announcements",
]  # fmt: skip


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def _azure_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="utf-8"?><Error><Code>'
        f"{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(status, body.encode(), "application/xml", [("x-ms-error-code", code)])


class App:
    def __init__(self, state: State) -> None:
        self.state = state
        self.sentinel = Sentinel(state)
        self.convs = Conversations(state)
        self.codex = Codex(state)
        Handler = Callable[[Request, bool, Entry, Entry, Match], Response]
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("POST", re.compile(r"sentinel/chat-requirements"), self._requirements),
            ("POST", re.compile(r"sentinel/chat-requirements/prepare"), self._prepare),
            ("POST", re.compile(r"sentinel/chat-requirements/finalize"), self._finalize),
            ("POST", re.compile(r"conversation"), self._conversation),
            ("POST", re.compile(r"f/conversation/prepare"), self._conduit),
            ("POST", re.compile(r"f/conversation"), self._f_conversation),
            ("POST", re.compile(r"f/conversation/resume"), self._resume),
            ("POST", re.compile(r"conversation/init"), self._init),
            ("POST", re.compile(r"codex/responses"), self._codex_responses),
            ("GET", re.compile(r"codex/models"), self._codex_models),
            ("GET", re.compile(r"celsius/ws/user"), self._ws_user),
            ("GET", re.compile(r"models"), self._models),
            ("GET", re.compile(r"me"), self._me),
            ("GET", re.compile(r"accounts/check/v4-2023-04-27"), self._accounts),
            ("GET", re.compile(r"conversations"), self._list),
            ("GET", re.compile(r"conversation/(?P<cid>[^/]+)"), self._get_conv),
            ("PATCH", re.compile(r"conversation/(?P<cid>[^/]+)"), self._patch_conv),
            ("POST", re.compile(r"files"), self._create_file),
            ("POST", re.compile(r"files/(?P<fid>[^/]+)/uploaded"), self._uploaded),
            ("GET", re.compile(r"files/(?P<fid>[^/]+)"), self._file_info),
            ("GET", re.compile(r"files/(?P<fid>[^/]+)/download"), self._download),
            (
                "GET",
                re.compile(r"conversation/(?P<cid>[^/]+)/attachment/(?P<fid>[^/]+)/download"),
                self._download,
            ),
            ("GET", re.compile(r"conversation/(?P<cid>[^/]+)/interpreter/download"), self._sandbox),
        ]

    async def __call__(self, req: Request) -> Response:
        try:
            return self._dispatch(req)
        except Exception:
            log.exception("handler failed for %s %s", req.method, req.path)
            return json_response(500, {"detail": "Internal Server Error"})

    def _dispatch(self, req: Request) -> Response:
        if req.path.startswith("/_fake/"):
            return self._control(req)
        st = self.state
        entry = st.log_request(req.method, req.path, req.raw_query, req.headers, req.body)
        if req.path.startswith("/_blob/"):
            return self._blob(req)
        if req.path in ("/", site.SENTINEL_SDK) or req.path.startswith("/assets/"):
            return site.serve(req)
        if req.path in ("/oauth/token", "/api/oauth/token"):
            return self._oauth(req) if req.method == "POST" else detail(405, "Method Not Allowed")
        m = re.match(r"^/(backend-api|backend-anon)/(.+?)/?$", req.path)
        if not m:
            return detail(404, "Not Found")
        anon = m.group(1) == "backend-anon"
        sub = m.group(2)
        if (sub in CLASSIC_ONLY and st.dialect == "2026") or (
            sub in ONLY_2026 and st.dialect == "classic"
        ):
            return detail(404, "Not Found")
        matched_path = False
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(sub)
            if not match:
                continue
            matched_path = True
            if method != req.method:
                continue
            claims_or_error = self._auth(req, anon)
            if isinstance(claims_or_error, Response):
                return claims_or_error
            return handler(req, anon, entry, claims_or_error, match)
        return detail(
            405 if matched_path else 404, "Method Not Allowed" if matched_path else "Not Found"
        )

    def _auth(self, req: Request, anon: bool) -> dict[str, Any] | Response:
        authz = req.header("authorization")
        if anon:
            if authz:
                return detail(401, "backend-anon takes no bearer token")
            if not req.header("oai-device-id"):
                return detail(403, faults.UNUSUAL_ACTIVITY)
            return {}
        if not authz:
            return detail(401, MSG_MISSING)
        scheme, _, token = authz.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return detail(401, MSG_BAD_TOKEN)
        try:
            return check_access_token(token.strip(), self.state.now())
        except TokenError as exc:
            return detail(401, exc.detail)

    # ------------------------------------------------------------ sentinel and conversation
    def _requirements(
        self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match
    ) -> Response:
        return self.sentinel.requirements(req, anon, self._account_id(claims))

    def _prepare(self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match) -> Response:
        return self.sentinel.prepare(req, anon, self._account_id(claims))

    def _finalize(
        self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match
    ) -> Response:
        return self.sentinel.finalize(req, anon, self._account_id(claims))

    def _conversation(
        self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match
    ) -> Response:
        return self.convs.conversation(req, anon, entry, f=False)

    def _f_conversation(
        self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match
    ) -> Response:
        return self.convs.conversation(req, anon, entry, f=True)

    def _conduit(self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match) -> Response:
        return self.convs.conduit_prepare(req, anon)

    def _resume(self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match) -> Response:
        return self.convs.resume(req, anon, entry)

    def _init(self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match) -> Response:
        return json_response(
            200,
            {
                "type": "conversation_detail_metadata",
                "banner_info": None,
                "blocked_features": [],
                "model_limits": [],
                "limits_progress": [],
                "default_model_slug": "gpt-5-3",
                "atlas_mode_enabled": None,
            },
        )

    # ------------------------------------------------------------ codex backend
    def _codex_responses(
        self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match
    ) -> Response:
        return self.codex.responses(req, anon, entry, claims)

    def _codex_models(
        self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match
    ) -> Response:
        return self.codex.models(req, anon, entry, claims)

    def _ws_user(self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match) -> Response:
        """The user WebSocket's address (docs/stream-handoff.md); the emulator speaks no
        WebSocket, so handed-off turns are followed through resume."""
        user = f"user-{self._account_id(claims)[:24]}"
        stamp = int(self.state.now())
        mac = secrets.token_hex(16)
        url = f"wss://ws.chatgpt.com/p6/ws/user/{user}?verify={stamp}-{mac}"
        return json_response(200, {"websocket_url": url})

    # ------------------------------------------------------------ account
    def _models(self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match) -> Response:
        models = [
            {
                "slug": slug,
                "max_tokens": 32767,
                "title": slug,
                "description": f"Fake {slug}",
                "tags": ["gpt4"] if not slug.startswith("text-") else [],
                "capabilities": {},
                "product_features": {},
            }
            for slug in MODELS
        ]
        return json_response(
            200, {"models": models, "categories": [], "default_model_slug": "auto"}
        )

    def _account_id(self, claims: dict[str, Any]) -> str:
        auth = claims.get(AUTH_CLAIM)
        if isinstance(auth, dict) and auth.get("chatgpt_account_id"):
            return str(auth["chatgpt_account_id"])
        return "00000000-0000-0000-0000-000000000000"

    def _me(self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match) -> Response:
        return json_response(
            200,
            {
                "object": "user",
                "id": f"user-{self._account_id(claims)[:24]}",
                "email": "fake@example.com",
                "name": "Fake User",
                "picture": None,
                "created": 1700000000,
                "phone_number": None,
                "mfa_flag_enabled": False,
                "amr": [],
                "groups": [],
                "orgs": {"object": "list", "data": []},
                "has_payg_project_spend_limit": None,
            },
        )

    def _accounts(
        self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match
    ) -> Response:
        account_id = self._account_id(claims)
        plan = {
            "is_paid_subscription_active": True,
            "subscription_plan": "chatgptplusplan",
            "account_user_role": "account-owner",
            "was_paid_customer": True,
            "has_customer_object": True,
            "subscription_expires_at_timestamp": None,
        }
        return json_response(
            200,
            {
                "account_plan": plan,
                "user_country": "US",
                "features": ACCOUNT_FEATURES,
                "accounts": {
                    account_id: {
                        "account": {
                            "account_id": account_id,
                            "account_user_role": "account-owner",
                            "plan_type": "plus",
                            "structure": "personal",
                            "is_deactivated": False,
                        },
                        "features": ACCOUNT_FEATURES,
                        "entitlement": {
                            "subscription_id": "sub_fake",
                            "has_active_subscription": True,
                            "subscription_plan": "chatgptplusplan",
                            "expires_at": None,
                        },
                    }
                },
                "account_ordering": [account_id],
            },
        )

    # ------------------------------------------------------------ conversation history
    def _list(self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match) -> Response:
        try:
            offset = int(req.query.get("offset", "0"))
            limit = int(req.query.get("limit", "28"))
        except ValueError:
            return json_response(
                422,
                {"detail": [{"loc": ["query", "offset"], "msg": "value is not a valid integer",
                             "type": "type_error.integer"}]},
            )  # fmt: skip
        convs = [c for c in self.state.conversations.values() if c.record and c.is_visible]
        convs.sort(key=lambda c: c.update_time, reverse=True)
        items = [
            {
                "id": c.id,
                "title": c.title,
                "create_time": _iso(c.create_time),
                "update_time": _iso(c.update_time),
                "mapping": None,
                "current_node": None,
                "conversation_template_id": c.gizmo_id,
                "gizmo_id": c.gizmo_id,
                "is_archived": False,
                "workspace_id": None,
                "async_status": c.async_status,
            }
            for c in convs[offset : offset + limit]
        ]
        return json_response(
            200,
            {"items": items, "total": len(convs), "limit": limit, "offset": offset,
             "has_missing_conversations": False},
        )  # fmt: skip

    def _visible(self, cid: str) -> Any:
        conv = self.state.conversations.get(cid)
        if conv is None or not conv.record or not conv.is_visible:
            return None
        return conv

    def _get_conv(
        self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match
    ) -> Response:
        conv = self._visible(m.group("cid"))
        if conv is None:
            return detail(404, f"Can't load conversation {m.group('cid')}")
        messages = list(conv.messages)
        if conv.late_messages and self.state.now() >= conv.late_ready_at:
            messages += conv.late_messages
            conv.async_status = None
        mapping: dict[str, Any] = {
            "client-created-root": {
                "id": "client-created-root",
                "message": None,
                "parent": None,
                "children": [],
            }
        }
        parent = "client-created-root"
        for message in messages:
            mapping[parent]["children"].append(message["id"])
            mapping[message["id"]] = {
                "id": message["id"],
                "message": message,
                "parent": parent,
                "children": [],
            }
            parent = message["id"]
        return json_response(
            200,
            {
                "title": conv.title,
                "create_time": conv.create_time,
                "update_time": conv.update_time,
                "mapping": mapping,
                "moderation_results": [],
                "current_node": parent,
                "conversation_id": conv.id,
                "gizmo_id": conv.gizmo_id,
                "is_archived": False,
                "safe_urls": [],
                "default_model_slug": conv.model,
                "async_status": conv.async_status,
            },
        )

    def _patch_conv(
        self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match
    ) -> Response:
        conv = self._visible(m.group("cid"))
        if conv is None:
            return detail(404, f"Can't load conversation {m.group('cid')}")
        try:
            body = parse_json_body(req.body)
        except Invalid as exc:
            return json_response(422, exc.body)
        if not isinstance(body, dict):
            return json_response(422, {"detail": [missing([])]})
        if "is_visible" in body:
            conv.is_visible = bool(body["is_visible"])
        if isinstance(body.get("title"), str):
            conv.title = body["title"]
        return json_response(200, {"success": True})

    # ------------------------------------------------------------ files
    def _create_file(
        self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match
    ) -> Response:
        try:
            body = parse_json_body(req.body)
        except Invalid as exc:
            return json_response(422, exc.body)
        errors = []
        if not isinstance(body, dict):
            body = {}
        if not isinstance(body.get("file_name"), str):
            errors.append(missing(["file_name"]))
        size = body.get("file_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            errors.append(missing(["file_size"]))
        if not isinstance(body.get("use_case"), str):
            errors.append(missing(["use_case"]))
        if errors:
            return json_response(422, {"detail": errors})
        stored = self.state.add_file(name=body["file_name"], size=size, use_case=body["use_case"])
        return json_response(
            200,
            {
                "status": "success",
                "upload_url": self.state.blob_url(stored),
                "file_id": stored.file_id,
            },
        )

    def _uploaded(
        self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match
    ) -> Response:
        stored = self.state.files.get(m.group("fid"))
        if stored is None:
            return detail(404, "File not found")
        if stored.data is None:
            return detail(400, "File has not been uploaded")
        return json_response(
            200,
            {"status": "success", "download_url": self.state.blob_url(stored), "metadata": {}},
        )

    def _file_info(
        self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match
    ) -> Response:
        stored = self.state.files.get(m.group("fid"))
        if stored is None:
            return detail(404, "File not found")
        return json_response(
            200,
            {
                "file_id": stored.file_id,
                "file_name": stored.name,
                "file_size_bytes": stored.size,
                "use_case": stored.use_case,
                "mime_type": stored.mime,
                "status": "success" if stored.data is not None else "uploading",
                "retrieval_index_status": "success" if stored.data is not None else "pending",
                "creation_time": _iso(stored.created),
            },
        )

    def _download(
        self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match
    ) -> Response:
        stored = self.state.files.get(m.group("fid"))
        if stored is None or stored.data is None:
            return detail(404, "File not found")
        return json_response(
            200,
            {
                "status": "success",
                "download_url": self.state.blob_url(stored),
                "metadata": None,
                "file_name": stored.name,
                "creation_time": None,
                "mime_type": stored.mime,
                "file_size_bytes": len(stored.data),
            },
        )

    def _sandbox(self, req: Request, anon: bool, entry: Entry, claims: Entry, m: Match) -> Response:
        errors = [
            {"loc": ["query", k], "msg": "field required", "type": "value_error.missing"}
            for k in ("message_id", "sandbox_path")
            if not req.query.get(k)
        ]
        if errors:
            return json_response(422, {"detail": errors})
        path = req.query["sandbox_path"]
        name = path.rsplit("/", 1)[-1] or "file"
        data = f"sandbox file {path}\n".encode()
        stored = self.state.add_file(name=name, size=len(data), use_case="ace_upload")
        stored.data, stored.mime = data, "text/plain"
        return json_response(
            200,
            {"status": "success", "download_url": self.state.blob_url(stored), "file_name": name},
        )

    def _blob(self, req: Request) -> Response:
        fid = req.path[len("/_blob/") :]
        stored = self.state.files.get(fid)
        if stored is None:
            return _azure_error(404, "BlobNotFound", "The specified blob does not exist.")
        if req.query.get("sig") != stored.sig:
            return _azure_error(403, "AuthenticationFailed", "Signature did not match.")
        if req.method == "PUT":
            if req.header("x-ms-blob-type") != "BlockBlob":
                return _azure_error(400, "MissingRequiredHeader", "x-ms-blob-type is required.")
            stored.data = req.body
            stored.size = len(req.body)
            stored.mime = (req.header("content-type") or stored.mime).split(";")[0].strip()
            return Response(201, b"", None, [("x-ms-request-server-encrypted", "true")])
        if req.method in ("GET", "HEAD"):
            if stored.data is None:
                return _azure_error(404, "BlobNotFound", "The specified blob does not exist.")
            return Response(200, stored.data, stored.mime)
        return _azure_error(405, "UnsupportedHttpVerb", "The resource doesn't support the verb.")

    # ------------------------------------------------------------ oauth
    def _oauth(self, req: Request) -> Response:
        st = self.state
        st.refresh_calls += 1
        try:
            body = json.loads(req.body)
        except ValueError:
            return json_response(
                400, {"error": "invalid_request", "error_description": "Body must be JSON."}
            )
        if not isinstance(body, dict) or not body.get("client_id"):
            return json_response(
                400, {"error": "invalid_request", "error_description": "Missing client_id."}
            )
        if body.get("grant_type") != "refresh_token":
            return json_response(
                400,
                {"error": "unsupported_grant_type", "error_description": "Unsupported grant type."},
            )
        rt = body.get("refresh_token")
        status = st.refresh_tokens.get(rt) if isinstance(rt, str) else None
        if status != "live":
            why = "reused" if status == "used" else "unknown"
            return json_response(
                400,
                {
                    "error": "invalid_grant",
                    "error_description": f"Unknown or invalid refresh token ({why}).",
                },
            )
        assert isinstance(rt, str)
        st.refresh_tokens[rt] = "used"
        new_rt = "rt_" + secrets.token_urlsafe(32)
        st.refresh_tokens[new_rt] = "live"
        return json_response(
            200,
            {
                "access_token": mint_access_token(exp_in=864000, now=st.now()),
                "refresh_token": new_rt,
                "id_token": mint_access_token(exp_in=3600, now=st.now(), typ="id"),
                "expires_in": 864000,
                "scope": "openid profile email offline_access",
                "token_type": "Bearer",
            },
        )

    # ------------------------------------------------------------ test control
    def _control(self, req: Request) -> Response:
        st = self.state
        name = req.path[len("/_fake/") :]
        if req.method == "GET" and name == "requests":
            return json_response(200, st.log)
        if req.method == "GET" and name == "image.png":
            return Response(200, FAKE_PNG, "image/png")
        if req.method == "GET" and name == "state":
            return json_response(
                200,
                {
                    "refresh_calls": st.refresh_calls,
                    "refresh_tokens": st.refresh_tokens,
                    "conversations": sorted(st.conversations),
                    "plans": st.plans.pending(),
                    "codex_calls": st.codex_calls,
                    "clock_offset": st.clock_offset,
                    "time": time.time(),
                },
            )
        if req.method != "POST":
            return detail(404, "Not Found")
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            return json_response(400, {"error": "body must be JSON"})
        if name == "reset":
            st.reset()
            return json_response(200, {"ok": True})
        if name == "next":
            try:
                for raw in body if isinstance(body, list) else [body]:
                    st.plans.add(faults.parse_plan(raw))
            except (faults.PlanError, ValueError, TypeError) as exc:
                return json_response(400, {"error": str(exc)})
            return json_response(200, {"ok": True, "plans": st.plans.pending()})
        if name == "refresh_tokens":
            tokens = body.get("tokens") if isinstance(body, dict) else None
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                return json_response(400, {"error": "tokens must be a list of strings"})
            for t in tokens:
                st.refresh_tokens[t] = "live"
            return json_response(200, {"ok": True})
        if name == "sentinel":
            allowed = {"persona", "personas", "turnstile", "arkose"}
            if not isinstance(body, dict) or set(body) - allowed:
                return json_response(400, {"error": f"keys: {', '.join(sorted(allowed))}"})
            st.challenges = body
            return json_response(200, {"ok": True})
        if name == "clock":
            st.clock_offset += float(body.get("advance_s", 0))
            return json_response(200, {"ok": True, "clock_offset": st.clock_offset})
        return detail(404, "Not Found")
