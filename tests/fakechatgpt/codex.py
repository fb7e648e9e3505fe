"""`POST /backend-api/codex/responses` and `GET /backend-api/codex/models` (docs/codex-backend.md).

Check order on a responses call, each refusing with the real backend's body where one is known:
bearer token (routes.py, 401) -> status plan (an edge answer) -> headers (chatgpt-account-id
belongs to the token, OpenAI-Beta, accept, originator, session id) -> body contract
(`body_error`) -> model and effort -> the stream (generated, or a replayed capture), with the
stream plan's faults. Headers the real backend tolerates are required here on purpose: the
client under test must send what Codex CLI sends.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from . import codex_events as events
from . import codex_models as models
from . import codex_plan
from .codex_answers import plan_turn
from .faults import Plan
from .http11 import ClientGone, Request, Response, Sink, json_response
from .state import State
from .tokens import AUTH_CLAIM
from .validation import Invalid, missing, parse_json_body, wrong_type

Entry = dict[str, Any]

UNSUPPORTED = (
    "max_output_tokens", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "frequency_penalty", "presence_penalty", "stop", "seed", "n", "logprobs", "top_logprobs",
)  # fmt: skip
WORKSPACES_CLAIM = "workspace_account_ids"  # emulator-only: Team accounts the token may use
DEFAULT_PLAN = "plus"
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"RIFF")


def detail(status: int, text: str) -> Response:
    return json_response(status, {"detail": text})


def api_error(status: int, message: str, *, param: str | None, code: str | None) -> Response:
    body = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return json_response(status, {"error": body})


def token_accounts(claims: dict[str, Any]) -> tuple[str, set[str], str]:
    """(personal account id, every account id the token may use, plan type)."""
    auth = claims.get(AUTH_CLAIM)
    auth = auth if isinstance(auth, dict) else {}
    own = str(auth.get("chatgpt_account_id") or "")
    extra = auth.get(WORKSPACES_CLAIM) or []
    ids = {str(x) for x in extra if isinstance(x, str)}
    if own:
        ids.add(own)
    return own, ids, str(auth.get("chatgpt_plan_type") or DEFAULT_PLAN)


def header_error(req: Request, claims: dict[str, Any]) -> Response | None:
    _, allowed, _ = token_accounts(claims)
    account = req.header("chatgpt-account-id")
    if not account:
        return detail(400, "Missing chatgpt-account-id header")
    if account not in allowed:
        return detail(403, "You do not have access to this account (chatgpt-account-id).")
    if "responses=experimental" not in (req.header("openai-beta") or ""):
        return detail(400, "OpenAI-Beta: responses=experimental is required")
    if "text/event-stream" not in (req.header("accept") or ""):
        return detail(400, "accept must include text/event-stream")
    if not (req.header("content-type") or "").startswith("application/json"):
        return detail(400, "content-type must be application/json")
    if not req.header("originator"):
        return detail(400, "Missing originator header")
    if not (req.header("session_id") or req.header("session-id")):
        return detail(400, "Missing session_id header")
    return None


PART_TYPES = (
    "input_text", "input_image", "output_text", "refusal", "input_file",
    "computer_screenshot", "summary_text",
)  # fmt: skip
BAD_IMAGE = (
    "The image data you provided does not represent a valid image. Please check your input and "
    "try again with one of the supported image formats: ['image/jpeg', 'image/png', "
    "'image/gif', 'image/webp']."
)


def _image_error(url: Any, where: str) -> Response | None:
    if not isinstance(url, str):
        got = "an object" if isinstance(url, dict) else type(url).__name__
        return api_error(
            400,
            f"Invalid type for '{where}': expected a string, but got {got} instead.",
            param=where,
            code="invalid_type",
        )
    if url.startswith(("https://", "http://")):
        return None
    head, _, data = url.partition(",")
    if not head.startswith("data:image/") or not head.endswith(";base64"):
        return api_error(
            400,
            f"Invalid '{where}'. Expected a base64-encoded data URL with an image MIME type "
            "(e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), or an https URL.",
            param=where,
            code="invalid_value",
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:
        raw = b""
    if not raw.startswith(IMAGE_MAGIC):
        return api_error(400, BAD_IMAGE, param=where, code="invalid_value")
    return None


def _content_error(content: Any, i: int) -> Response | None:
    """Message content: a string, or parts of the Responses types (not Chat's `text`)."""
    if isinstance(content, str) or content is None:
        return None
    if not isinstance(content, list):
        return json_response(422, Invalid([wrong_type(["input", i, "content"], "list")]).body)
    for j, part in enumerate(content):
        where = f"input[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in PART_TYPES:
            allowed = ", ".join(f"'{t}'" for t in PART_TYPES[:-1])
            return api_error(
                400,
                f"Invalid value: '{kind}'. Supported values are: {allowed}, and "
                f"'{PART_TYPES[-1]}'.",
                param=f"{where}.type",
                code="invalid_value",
            )
        if kind == "input_image":
            assert isinstance(part, dict)
            problem = _image_error(part.get("image_url"), f"{where}.image_url")
            if problem:
                return problem
    return None


def _items_error(items: list[Any], account: str) -> Response | None:
    calls: set[str] = set()
    answered: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            return json_response(422, Invalid([wrong_type(["input", i], "dict")]).body)
        if item.get("id") is not None:
            return api_error(
                400,
                f"Item with id '{item['id']}' not found. Items are not persisted when `store` "
                "is set to false. Try again with `store` set to true, or remove this item from "
                "your input.",
                param="input",
                code=None,
            )
        kind = item.get("type")
        if kind in (None, "message"):
            problem = _content_error(item.get("content"), i)
            if problem:
                return problem
        elif kind in ("function_call", "custom_tool_call"):
            calls.add(str(item.get("call_id")))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            call_id = str(item.get("call_id"))
            if call_id not in calls:
                return api_error(
                    400,
                    f"No tool call found for function call output with call_id {call_id}.",
                    param="input",
                    code=None,
                )
            answered.add(call_id)
        elif kind == "reasoning":
            owner = events.blob_account(str(item.get("encrypted_content") or ""))
            if owner is not None and owner != account:
                return api_error(
                    400,
                    "The encrypted content for item could not be verified. Reason: Encrypted "
                    "content could not be decrypted or parsed.",
                    param=None,
                    code="invalid_encrypted_content",
                )
    unanswered = sorted(calls - answered)
    if unanswered:
        return api_error(
            400,
            f"No tool output found for function call {unanswered[0]}.",
            param="input",
            code=None,
        )
    return None


def _tools_error(body: dict[str, Any]) -> Response | None:
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        return json_response(422, Invalid([wrong_type(["tools"], "list")]).body)
    names = set()
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            return api_error(
                400,
                f"Missing required parameter: 'tools[{i}].type'.",
                param=f"tools[{i}].type",
                code="missing_required_parameter",
            )
        if tool["type"] in ("function", "custom"):
            if not isinstance(tool.get("name"), str) or not tool["name"]:
                return api_error(
                    400,
                    f"Missing required parameter: 'tools[{i}].name'.",
                    param=f"tools[{i}].name",
                    code="missing_required_parameter",
                )
            names.add(tool["name"])
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
        if choice.get("name") not in names:
            return api_error(
                400,
                f"Tool choice '{choice.get('name')}' not found in 'tools' parameter.",
                param="tool_choice",
                code=None,
            )
    return None


def body_error(body: Any, account: str, plan_type: str) -> Response | None:
    """The first rule this body breaks, answered as the backend does; None if it is fine."""
    if not isinstance(body, dict):
        return json_response(422, Invalid([wrong_type([], "dict")]).body)
    instructions = body.get("instructions")
    if not isinstance(instructions, str) or not instructions.strip():
        return detail(400, "Instructions are required")
    if body.get("store") is not False:
        return detail(400, "Store must be set to false")
    if body.get("stream") is not True:
        return detail(400, "Stream must be set to true")
    for param in UNSUPPORTED:
        if param in body:
            return detail(400, f"Unsupported parameter: {param}")
    if not isinstance(body.get("model"), str):
        return json_response(422, Invalid([missing(["model"])]).body)
    if not isinstance(body.get("input"), list):
        return json_response(422, Invalid([wrong_type(["input"], "list")]).body)
    if body.get("previous_response_id") is not None:
        return api_error(
            400,
            f"Previous response with id '{body['previous_response_id']}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    problem = _items_error(body["input"], account) or _tools_error(body)
    if problem:
        return problem
    model = models.lookup(body["model"], plan_type)
    if model is None:
        return detail(400, models.not_supported_message(body["model"]))
    return _options_error(body, model)


def _one_of(value: Any, allowed: tuple[str, ...], param: str, model: str | None) -> Response | None:
    if value is None or value in allowed:
        return None
    listed = ", ".join(f"'{a}'" for a in allowed[:-1])
    listed = f"{listed}, and '{allowed[-1]}'" if listed else f"'{allowed[-1]}'"
    if model is None:
        message = f"Invalid value: '{value}'. Supported values are: {listed}."
        return api_error(400, message, param=param, code="invalid_value")
    message = (
        f"Unsupported value: '{value}' is not supported with the '{model}' model. "
        f"Supported values are: {listed}."
    )
    return api_error(400, message, param=param, code="unsupported_value")


def _options_error(body: dict[str, Any], model: models.CodexModel) -> Response | None:
    """tool_choice, reasoning effort and summary, and verbosity, as the model allows them."""
    choice = body.get("tool_choice")
    raw_reasoning, raw_text = body.get("reasoning"), body.get("text")
    reasoning: dict[str, Any] = raw_reasoning if isinstance(raw_reasoning, dict) else {}
    text: dict[str, Any] = raw_text if isinstance(raw_text, dict) else {}
    verbosities = ("low", "medium", "high") if model.verbosity else ("medium",)
    return (
        _one_of(
            choice if isinstance(choice, str) else None,
            ("none", "auto", "required"),
            "tool_choice",
            None,
        )
        or _one_of(reasoning.get("effort"), model.efforts, "reasoning.effort", model.slug)
        or _one_of(
            reasoning.get("summary"), ("auto", "concise", "detailed"), "reasoning.summary", None
        )
        or _one_of(text.get("verbosity"), verbosities, "text.verbosity", model.slug)
    )


class Codex:
    def __init__(self, state: State) -> None:
        self.state = state

    # ------------------------------------------------------------ limits
    def limit_headers(self, account: str, used: float | None = None) -> list[tuple[str, str]]:
        """The x-codex-* rate-limit headers every reply carries."""
        st = self.state
        calls = st.codex_calls.get(account, 0)
        primary = used if used is not None else min(100.0, float(calls))
        now = int(st.now())
        return [
            ("x-codex-primary-used-percent", f"{primary:.1f}"),
            ("x-codex-primary-window-minutes", "300"),
            ("x-codex-primary-reset-after-seconds", "3600"),
            ("x-codex-primary-reset-at", str(now + 3600)),
            ("x-codex-secondary-used-percent", f"{primary / 10:.1f}"),
            ("x-codex-secondary-window-minutes", "10080"),
            ("x-codex-secondary-reset-after-seconds", "86400"),
            ("x-codex-secondary-reset-at", str(now + 86400)),
            ("x-codex-credits-has-credits", "False"),
            ("x-codex-credits-unlimited", "False"),
            ("x-codex-credits-balance", "0"),
            ("x-codex-active-limit", "codex"),
            ("x-request-id", events.new_id("req")[:40]),
        ]

    # ------------------------------------------------------------ responses
    def responses(self, req: Request, anon: bool, entry: Entry, claims: Entry) -> Response:
        if anon:
            return detail(404, "Not Found")
        st = self.state
        account = req.header("chatgpt-account-id") or ""
        own, _, plan_type = token_accounts(claims)
        account = account or own

        def mine(p: Plan) -> bool:
            return p.codex.account is None or p.codex.account == account

        plan = st.plans.peek_first("codex", mine)
        if plan is not None and plan.answers_status:
            st.plans.take_first("codex", mine)
            entry["plan"] = plan.raw
            return self._edge(plan, account, plan_type, _model_of(req.body))
        refused = header_error(req, claims)
        if refused:
            return refused
        try:
            body = parse_json_body(req.body)
        except Invalid as exc:
            return json_response(422, exc.body)
        refused = body_error(body, account, plan_type)
        if refused:
            return refused
        plan = st.plans.take_first("codex", mine) or Plan(
            target="codex", codex=codex_plan.CodexPlan()
        )
        entry["plan"] = plan.raw
        st.codex_calls[account] = st.codex_calls.get(account, 0) + 1
        return self._answer(body, plan, account, entry)

    def _edge(self, plan: Plan, account: str, plan_type: str, model: str) -> Response:
        cp: codex_plan.CodexPlan = plan.codex
        assert plan.status is not None
        headers = self.limit_headers(account)
        if cp.preset is None:
            return Response(plan.status, plan.body, plan.content_type, _merge(headers, cp.headers))
        ctype, raw = codex_plan.preset_answer(
            cp.preset,
            plan_type=cp.plan_type or plan_type,
            resets_in=cp.resets_in_seconds,
            model=model,
            now=self.state.now(),
        )
        if cp.preset == "usage_limit":
            headers = self.limit_headers(account, used=100.0)
        if cp.preset == "cloudflare":
            headers = [("cf-mitigated", "challenge"), ("cf-ray", "8d2f0c1b2a3e4f5a-FRA")]
        return Response(plan.status, raw, ctype, _merge(headers, cp.headers))

    def _context(self, body: dict[str, Any], account: str) -> events.Context:
        st = self.state
        text = json.dumps(body.get("input"), ensure_ascii=False) + str(body.get("instructions"))
        tokens = (len(text.encode()) + 3) // 4
        key = body.get("prompt_cache_key")
        cached = 0
        if isinstance(key, str) and key in st.codex_cache:
            cached = min(st.codex_cache[key], tokens) // 64 * 64
        if isinstance(key, str):
            st.codex_cache[key] = tokens
        return events.Context(
            body=body,
            account_id=account,
            created_at=int(st.now()),
            input_tokens=tokens,
            cached_tokens=cached,
        )

    def _answer(self, body: dict[str, Any], plan: Plan, account: str, entry: Entry) -> Response:
        st = self.state
        cp: codex_plan.CodexPlan = plan.codex
        ctx = self._context(body, account)
        replay = cp.replay or st.codex_replay
        entry.update(events_sent=0, client_disconnected=False, completed=False)
        if replay:
            chunks = self._replay_chunks(replay, cp)
            entry["codex"] = {"replay": replay}
        else:
            turn = plan_turn(
                body,
                tool_calls=cp.tool_calls or None,
                answer=cp.answer,
                preamble=cp.preamble,
                summary=cp.summary,
            )
            built = events.build(ctx, turn, int(st.now()))
            chunks = [events.frame(e) for e in built.events]
            entry["codex"] = {
                "response_id": ctx.response_id,
                "kind": turn.kind,
                "output": built.output,
                "usage": built.usage,
            }
        chunks = _terminal(chunks, cp, ctx, int(st.now()))
        entry["codex"]["terminal"] = events.type_of(chunks[-1]) if chunks else None
        headers = _merge(self.limit_headers(account), cp.headers)

        async def run(sink: Sink) -> None:
            try:
                await play(sink, chunks, plan, entry)
            except ClientGone:
                entry["client_disconnected"] = True
                raise

        # The real backend sends its event stream without a Content-Type.
        return Response(200, content_type=None, headers=headers, stream=run)

    def _replay_chunks(self, path: str, cp: codex_plan.CodexPlan) -> list[bytes]:
        st = self.state
        framing = cp.framing if cp.replay or cp.framing_set else st.codex_replay_framing
        parts = events.load_replay(path, framing)
        if cp.replay_part == "all":
            return [c for part in parts for c in part]
        if isinstance(cp.replay_part, int):
            return parts[cp.replay_part % len(parts)]
        if cp.replay:
            index = cp.uses
            cp.uses += 1
        else:
            index = st.codex_replay_uses
            st.codex_replay_uses += 1
        return parts[index % len(parts)]

    # ------------------------------------------------------------ models
    def models(self, req: Request, anon: bool, entry: Entry, claims: Entry) -> Response:
        if anon:
            return detail(404, "Not Found")
        _, allowed, plan_type = token_accounts(claims)
        account = req.header("chatgpt-account-id")
        if account and account not in allowed:
            return detail(403, "You do not have access to this account (chatgpt-account-id).")
        version = req.query.get("client_version")
        if version is None:
            return json_response(
                422,
                {"detail": [{"loc": ["query", "client_version"], "msg": "field required",
                             "type": "value_error.missing"}]},
            )  # fmt: skip
        parsed = models.version_tuple(version)
        if parsed is None:
            return detail(400, f"Invalid client_version: {version[:40]}")
        body, etag = models.catalog(plan_type, parsed)
        return json_response(200, body, [("x-models-etag", etag)])


def _model_of(raw: bytes) -> str:
    """The body's model, for the preset that names it; "" if there is none."""
    try:
        body = json.loads(raw)
    except ValueError:
        return ""
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else ""


def _merge(headers: list[tuple[str, str]], extra: dict[str, str]) -> list[tuple[str, str]]:
    """Headers with the plan's replacing any of the same name."""
    names = {k.lower() for k in extra}
    return [(k, v) for k, v in headers if k.lower() not in names] + list(extra.items())


def _terminal(
    chunks: list[bytes], cp: codex_plan.CodexPlan, ctx: events.Context, now: int
) -> list[bytes]:
    """Apply the plan's ending: failed / error / incomplete / no completed / early end."""
    ends_completed = bool(chunks) and b'"type":"response.completed"' in chunks[-1]
    at = cp.fail_after_events
    if at is None:
        at = len(chunks) - 1 if ends_completed else len(chunks)
    at = max(0, min(at, len(chunks)))
    if cp.failed is not None:
        return chunks[:at] + [events.frame(events.failed_event(ctx, at, cp.failed))]
    if cp.error_event is not None:
        return chunks[:at] + [events.frame(events.error_event(at, cp.error_event))]
    if cp.incomplete is not None and ends_completed:
        last = len(chunks) - 1
        return chunks[:last] + [
            events.frame(events.incomplete_event(ctx, last, cp.incomplete, now))
        ]
    if cp.no_completed and ends_completed:
        chunks = chunks[:-1]
    if cp.end_after_events is not None:
        chunks = chunks[: cp.end_after_events]
    return chunks


async def play(sink: Sink, chunks: list[bytes], plan: Plan, entry: Entry) -> None:
    cp: codex_plan.CodexPlan = plan.codex
    if plan.stall_ms and plan.stall_after_events is None:
        await sink.sleep(plan.stall_ms / 1000)
    started = time.monotonic()
    for i, chunk in enumerate(chunks):
        if cp.drop_after_events is not None and i == cp.drop_after_events:
            entry["ended"] = "dropped"
            await sink.abort()
            return
        if plan.stall_after_events is not None and i == plan.stall_after_events:
            await sink.sleep(plan.stall_ms / 1000)
        if i and plan.delay_ms:
            await sink.sleep(plan.delay_ms / 1000)
        await sink.send(chunk)
        entry["events_sent"] += 1
    if cp.drop_after_events is not None:
        entry["ended"] = "dropped"
        await sink.abort()
        return
    entry["completed"] = True
    entry["ended"] = "done"
    entry["stream_seconds"] = round(time.monotonic() - started, 3)
