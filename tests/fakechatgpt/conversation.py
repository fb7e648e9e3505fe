"""Sentinel endpoints, conversation calls (classic and 2026), resume, and stream playback.

Check order on a conversation call, each refusing like the backend does:
status plan (an edge answer) -> required headers (403 unusual activity) -> body (422) ->
2026 conduit token (403) -> chat-requirements token (403) -> proof token (403) -> referenced
files (400) -> stream (with the stream plan, if any). A chat-requirements token and a conduit
token are consumed only by a call that passes every check.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from . import answers, faults, sentinel, streams, toolmodel
from .faults import Plan
from .http11 import ClientGone, Request, Response, Sink, json_response
from .state import (
    CONDUIT_TTL,
    PREPARE_TTL,
    REQUIREMENTS_TTL,
    Conversation,
    Prepared,
    Requirement,
    State,
)
from .tokens import b64url, mint_access_token, opaque_token
from .validation import Invalid, check_conversation_body, missing, parse_json_body

SSE_TYPE = "text/event-stream; charset=utf-8"
SSE_HEADERS = [("cache-control", "no-cache"), ("x-accel-buffering", "no")]
INTERNAL = {"detail": "Internal Server Error"}


def detail(status: int, text: Any) -> Response:
    return json_response(status, {"detail": text})


def plan_response(plan: Plan) -> Response:
    assert plan.status is not None
    return Response(plan.status, plan.body, plan.content_type)


class Sentinel:
    def __init__(self, state: State) -> None:
        self.state = state

    def _persona(self, anon: bool, account: str) -> str:
        if anon:
            return "chatgpt-noauth"
        by_account = self.state.challenges.get("personas") or {}
        return str(
            by_account.get(account) or self.state.challenges.get("persona") or "chatgpt-paid"
        )

    def _challenge(self, name: str) -> dict[str, Any]:
        """The ``turnstile`` / ``arkose`` object of an answer (/_fake/sentinel asks for one)."""
        wanted = self.state.challenges.get(name)
        if isinstance(wanted, dict):
            return {"required": True, "dx": wanted.get("dx")}
        return {"required": False, "dx": None} if name == "arkose" else {"required": False}

    def _expected(self, name: str) -> str | None:
        wanted = self.state.challenges.get(name)
        return str(wanted["token"]) if isinstance(wanted, dict) and "token" in wanted else None

    def _p(self, req: Request, dialects: tuple[str, ...]) -> sentinel.DecodedConfig | Response:
        try:
            body = parse_json_body(req.body)
        except Invalid as exc:
            return json_response(422, exc.body)
        if not isinstance(body, dict) or not isinstance(body.get("p"), str):
            return json_response(422, {"detail": [missing(["p"])]})
        try:
            decoded = sentinel.decode_config(body["p"], sentinel.REQ_PREFIX, dialects)
        except sentinel.SentinelError as exc:
            return detail(403, f"Invalid requirements token: {exc.detail}")
        if decoded.dialect == sentinel.CLASSIC and decoded.config[4] != req.header("user-agent"):
            return detail(403, "Invalid requirements token: config[4] is not the user-agent sent")
        return decoded

    def _edge(self) -> Response | None:
        plan = self.state.plans.peek("sentinel")
        if plan is not None and plan.answers_status:
            self.state.plans.take("sentinel")
            return plan_response(plan)
        return None

    def requirements(self, req: Request, anon: bool, account: str = "") -> Response:
        edge = self._edge()
        if edge:
            return edge
        decoded = self._p(req, (sentinel.CLASSIC, sentinel.DIALECT_2026))
        if isinstance(decoded, Response):
            return decoded
        st = self.state
        now = st.now()
        r = Requirement(
            token=opaque_token(),
            seed=st.new_seed(),
            difficulty=st.difficulty,
            dialect=decoded.dialect,
            persona=self._persona(anon, account),
            expires_at=now + REQUIREMENTS_TTL,
            turnstile=self._expected("turnstile"),
            arkose=self._expected("arkose"),
        )
        st.requirements[r.token] = r
        return json_response(
            200,
            {
                "persona": r.persona,
                "token": r.token,
                "expire_after": int(REQUIREMENTS_TTL),
                "expire_at": int(r.expires_at),
                "arkose": self._challenge("arkose"),
                "turnstile": self._challenge("turnstile"),
                "proofofwork": {"required": True, "seed": r.seed, "difficulty": r.difficulty},
            },
        )

    def prepare(self, req: Request, anon: bool, account: str = "") -> Response:
        edge = self._edge()
        if edge:
            return edge
        decoded = self._p(req, (sentinel.DIALECT_2026,))
        if isinstance(decoded, Response):
            return decoded
        st = self.state
        p = Prepared(
            token=opaque_token(),
            seed=st.new_seed(),
            difficulty=st.difficulty,
            persona=self._persona(anon, account),
            expires_at=st.now() + PREPARE_TTL,
        )
        st.prepared[p.token] = p
        return json_response(
            200,
            {
                "persona": p.persona,
                "prepare_token": p.token,
                "turnstile": self._challenge("turnstile"),
                "proofofwork": {"required": True, "seed": p.seed, "difficulty": p.difficulty},
                "so": {"required": False},
            },
        )

    def finalize(self, req: Request, anon: bool, account: str = "") -> Response:
        edge = self._edge()
        if edge:
            return edge
        st = self.state
        try:
            body = json.loads(req.body)
        except ValueError:
            return json_response(500, INTERNAL)
        # A wrong body (e.g. proof_token instead of proofofwork) is a bare 500, like the real one.
        if not isinstance(body, dict) or set(body) - {"prepare_token", "proofofwork", "turnstile"}:
            return json_response(500, INTERNAL)
        prepared = st.prepared.get(body.get("prepare_token") or "")
        if prepared is None or prepared.used or prepared.expires_at <= st.now():
            return json_response(500, INTERNAL)
        expected = self._expected("turnstile")
        if expected is not None and body.get("turnstile") != expected:
            return detail(403, "Missing or invalid turnstile token")
        try:
            sentinel.verify_proof(
                body.get("proofofwork"),
                seed=prepared.seed,
                difficulty=prepared.difficulty,
                dialect=sentinel.DIALECT_2026,
            )
        except sentinel.SentinelError as exc:
            return detail(403, exc.detail)
        prepared.used = True
        now = st.now()
        r = Requirement(
            token=opaque_token(),
            seed=prepared.seed,
            difficulty=prepared.difficulty,
            dialect=sentinel.DIALECT_2026,
            persona=prepared.persona,
            expires_at=now + REQUIREMENTS_TTL,
        )
        st.requirements[r.token] = r
        return json_response(
            200,
            {
                "persona": r.persona,
                "token": r.token,
                "expire_after": int(REQUIREMENTS_TTL),
                "expire_at": int(r.expires_at),
            },
        )


def _prompt_of(messages: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    for message in reversed(messages):
        if message["author"]["role"] == "user":
            parts = message["content"].get("parts") or []
            text = "\n".join(p for p in parts if isinstance(p, str))
            return text, message
    return "", {}


def _asset_ids(messages: list[dict[str, Any]]) -> list[str]:
    ids = []
    for message in messages:
        for part in message["content"].get("parts") or []:
            if isinstance(part, dict) and part.get("content_type") == "image_asset_pointer":
                pointer = str(part.get("asset_pointer", ""))
                ids.append(pointer.split("://", 1)[-1])
        for att in (message.get("metadata") or {}).get("attachments") or []:
            if isinstance(att, dict) and "id" in att:
                ids.append(str(att["id"]))
    return ids


class Conversations:
    def __init__(self, state: State) -> None:
        self.state = state

    # ------------------------------------------------------------ f/conversation/prepare
    def conduit_prepare(self, req: Request, anon: bool) -> Response:
        st = self.state
        try:
            check_conversation_body(parse_json_body(req.body), with_messages=False)
        except Invalid as exc:
            return json_response(422, exc.body)
        sent = req.header("x-conduit-token")
        if sent and sent != "no-token" and st.conduits.get(sent, 0) <= st.now():
            return detail(403, "Invalid conduit token")
        token = "ct_" + b64url(uuid.uuid4().bytes + uuid.uuid4().bytes)
        st.conduits[token] = st.now() + CONDUIT_TTL
        return json_response(200, {"status": "ok", "conduit_token": token})

    # ------------------------------------------------------------ conversation
    def conversation(self, req: Request, anon: bool, entry: dict[str, Any], *, f: bool) -> Response:
        st = self.state
        plan = st.plans.peek("conversation")
        if plan is not None and plan.answers_status:
            st.plans.take("conversation")
            entry["plan"] = plan.raw
            return plan_response(plan)
        if "text/event-stream" not in (req.header("accept") or ""):
            return detail(400, "accept must include text/event-stream")
        if not (req.header("content-type") or "").startswith("application/json"):
            return detail(400, "content-type must be application/json")
        if not req.header("oai-device-id") or not req.header("user-agent"):
            return detail(403, faults.UNUSUAL_ACTIVITY)
        try:
            body = check_conversation_body(parse_json_body(req.body), with_messages=True)
        except Invalid as exc:
            return json_response(422, exc.body)
        conduit = req.header("x-conduit-token") or ""
        if f and st.conduits.get(conduit, 0) <= st.now():
            return detail(403, "Missing or invalid conduit token (x-conduit-token)")
        token = req.header("openai-sentinel-chat-requirements-token") or ""
        r = st.requirements.get(token)
        if r is None:
            return detail(403, "Missing or invalid chat requirements token")
        if r.used:
            return detail(403, "Chat requirements token has already been used")
        if r.expires_at <= st.now():
            return detail(403, "Chat requirements token has expired")
        for name, expected in (("turnstile", r.turnstile), ("arkose", r.arkose)):
            if expected is not None and req.header(f"openai-sentinel-{name}-token") != expected:
                return detail(403, f"Missing or invalid {name} token")
        try:
            sentinel.verify_proof(
                req.header("openai-sentinel-proof-token"),
                seed=r.seed,
                difficulty=r.difficulty,
                dialect=r.dialect,
            )
        except sentinel.SentinelError as exc:
            return detail(403, exc.detail)
        for fid in _asset_ids(body["messages"]):
            stored = st.files.get(fid)
            if stored is None or stored.data is None:
                return detail(400, f"File {fid} not found or not uploaded")
        cid = body.get("conversation_id")
        if cid is not None and cid not in st.conversations:
            return detail(404, f"Can't load conversation {cid}")
        # Every check passed: the tokens are spent.
        r.used = True
        if f:
            del st.conduits[conduit]
        plan = st.plans.take("conversation") or Plan()
        entry["plan"] = plan.raw
        return self._answer(req, body, plan, entry)

    def _answer(
        self, req: Request, body: dict[str, Any], plan: Plan, entry: dict[str, Any]
    ) -> Response:
        st = self.state
        model = body["model"]
        prompt, user_message = _prompt_of(body["messages"])
        mode = body.get("conversation_mode") or {}
        gizmo_id = mode.get("gizmo_id") if mode.get("kind") == "gizmo_interaction" else None
        cid = body.get("conversation_id") or str(uuid.uuid4())
        entry["conversation_id"] = cid
        entry["gizmo_id"] = gizmo_id
        entry["events_sent"] = 0
        entry["client_disconnected"] = False
        entry["completed"] = False
        replay = plan.replay or st.replay
        if replay:
            chunks = streams.split_replay(Path(replay).read_bytes())
            return self._stream(chunks, plan, entry, cid)
        legacy = st.format == "legacy" or body.get("supported_encodings") == []
        picture = "picture_v2" in (body.get("system_hints") or [])
        resume_token = mint_access_token(exp_in=4 * 3600, now=st.now(), typ="resume")
        turn = streams.Turn(
            conversation_id=cid,
            model=model,
            prompt=prompt,
            user_message=user_message,
            answer=plan.answer
            if plan.answer is not None
            else toolmodel.answer(body["messages"], plan.tool_mode)
            or answers.expected_answer(prompt, model),
            resume_token=resume_token,
            picture=picture and not plan.async_image,
            async_image=plan.async_image,
            moderation=plan.moderation,
            image_role=plan.image_role,
            gizmo_id=gizmo_id,
            answer_model=plan.answer_model,
            model_adjustments=plan.model_adjustments,
            handoff=plan.handoff_after_events is not None,
        )
        if picture or plan.async_image:
            for scheme in ("sediment", "file-service"):
                pointer, stored = st.generated_image(scheme)
                turn.images.append(
                    streams.Image(
                        file_id=stored.file_id,
                        asset_pointer=pointer,
                        size_bytes=stored.size,
                        width=8,
                        height=8,
                    )
                )
        script = streams.build_turn(turn)
        chunks = (
            streams.render_legacy(script.steps, cid) if legacy else streams.render_v1(script.steps)
        )
        now = st.now()
        conv = st.conversations.get(cid)
        if conv is None:
            conv = Conversation(
                id=cid,
                title=next(
                    (
                        s.obj["title"]
                        for s in reversed(script.steps)
                        if s.kind == "plain" and s.obj.get("type") == "title_generation"
                    ),
                    "New chat",
                ),  # fmt: skip
                model=model,
                create_time=now,
                update_time=now,
                gizmo_id=gizmo_id,
                record=not body.get("history_and_training_disabled", False),
            )
            st.conversations[cid] = conv
        conv.update_time = now
        conv.messages.extend(m for m in script.messages if m["author"]["role"] != "system")
        if script.late_messages:
            conv.late_messages.extend(script.late_messages)
            conv.late_ready_at = now + plan.async_ready_ms / 1000
            conv.async_status = 7
        conv.chunks = chunks
        conv.resume_token = resume_token
        conv.resume_fail = plan.resume_fail
        if plan.handoff_after_events is not None:
            chunks, conv.chunks = hand_off(chunks, plan, cid)
            entry["handoff"] = True
        return self._stream(chunks, plan, entry, cid)

    def _stream(
        self, chunks: list[streams.Chunk], plan: Plan, entry: dict[str, Any], cid: str
    ) -> Response:
        async def run(sink: Sink) -> None:
            try:
                await play(sink, chunks, plan, entry, cid)
            except ClientGone:
                entry["client_disconnected"] = True
                raise

        return Response(200, content_type=SSE_TYPE, headers=list(SSE_HEADERS), stream=run)

    # ------------------------------------------------------------ resume
    def resume(self, req: Request, anon: bool, entry: dict[str, Any]) -> Response:
        st = self.state
        try:
            body = parse_json_body(req.body)
        except Invalid as exc:
            return json_response(422, exc.body)
        if not isinstance(body, dict):
            return json_response(422, {"detail": [missing(["conversation_id"])]})
        errors = [missing([k]) for k in ("conversation_id", "offset") if k not in body]
        offset = body.get("offset")
        if not errors and (isinstance(offset, bool) or not isinstance(offset, int) or offset < 0):
            errors.append(
                {
                    "loc": ["body", "offset"],
                    "msg": "value is not a valid integer",
                    "type": "type_error.integer",
                }
            )
        if errors:
            return json_response(422, {"detail": errors})
        conv = st.conversations.get(str(body["conversation_id"]))
        if conv is None or not conv.chunks or conv.resume_fail:
            return detail(404, "Not Found")
        if req.header("x-conduit-token") != conv.resume_token:
            return detail(404, "Not Found")
        entry.update(
            conversation_id=conv.id, events_sent=0, client_disconnected=False, completed=False
        )
        entry["resume_offset"] = offset
        assert isinstance(offset, int)
        return self._stream(skip_events(conv.chunks, offset), Plan(), entry, conv.id)


def hand_off(
    chunks: list[streams.Chunk], plan: Plan, cid: str
) -> tuple[list[streams.Chunk], list[streams.Chunk]]:
    """(the first stream, the stream resume serves) of a handed-off turn.

    The first stops after `handoff_after_events` chunks with a `stream_handoff` event and
    [DONE]; the turn goes on in a stream of its own, served by resume from offset 0: the
    rest of the events (or, with `handoff_replay`, the whole turn again). docs/stream-handoff.md.
    """
    assert plan.handoff_after_events is not None
    cut = max(0, min(plan.handoff_after_events, len(chunks) - 1))  # [DONE] stays in the rest
    turn = str(uuid.uuid4())
    topic = f"conversation-turn-{turn}"
    handoff = {
        "type": "stream_handoff",
        "conversation_id": cid,
        "turn_exchange_id": turn,
        "options": [
            {"type": "resume_sse_endpoint", "topic_id": topic},
            {"type": "subscribe_ws_topic", "topic_id": topic},
        ],
    }
    event = streams.Chunk(b"data: " + json.dumps(handoff).encode() + b"\n\n", True)
    first = chunks[:cut] + [event, streams.Chunk(b"data: [DONE]\n\n", False)]
    encoding = [c for c in chunks[:1] if c.data.startswith(b"event: delta_encoding")]
    rest = chunks if plan.handoff_replay else encoding + chunks[cut:]
    return first, rest


def skip_events(chunks: list[streams.Chunk], offset: int) -> list[streams.Chunk]:
    """The stream after its first `offset` counted events (docs/backend-2026.md#resume)."""
    seen = 0
    for i, chunk in enumerate(chunks):
        if seen == offset:
            return chunks[i:]
        seen += chunk.counted
    return []


MALFORMED = b'event: delta\ndata: {"p": "/message/content/parts/0", "o": "append", "v": "unter\n\n'


async def play(
    sink: Sink, chunks: list[streams.Chunk], plan: Plan, entry: dict[str, Any], cid: str
) -> None:
    malformed_at: int | None = None
    if plan.malformed_event is True:
        malformed_at = len(chunks) // 2
    elif isinstance(plan.malformed_event, int) and plan.malformed_event is not False:
        malformed_at = plan.malformed_event
    if plan.stall_ms and plan.stall_after_events is None:
        await sink.sleep(plan.stall_ms / 1000)
    started = time.monotonic()
    for i, chunk in enumerate(chunks):
        if plan.error_event is not None and i == plan.error_after_events:
            err = {"message": None, "conversation_id": cid, "error": plan.error_event}
            await sink.send(b"data: " + json.dumps(err).encode() + b"\n\n")
            entry["events_sent"] += 1
            entry["ended"] = "error_event"
            return
        if plan.drop_after_events is not None and i == plan.drop_after_events:
            entry["ended"] = "dropped"
            await sink.abort()
            return
        if plan.stall_after_events is not None and i == plan.stall_after_events:
            await sink.sleep(plan.stall_ms / 1000)
        if i == malformed_at:
            await sink.send(MALFORMED)
            entry["events_sent"] += 1
        if i and plan.delay_ms:
            await sink.sleep(plan.delay_ms / 1000)
        await sink.send(chunk.data)
        entry["events_sent"] += 1
    entry["completed"] = True
    entry["ended"] = "done"
    entry["stream_seconds"] = round(time.monotonic() - started, 3)
