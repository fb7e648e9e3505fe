"""The real captures of the ChatGPT backend, and a deliberately naive reader of them.

The reader parses a capture by splitting on blank lines, applies every operation to
full documents (copying freely), then takes the final text of the messages that pass
the visible-answer rule of docs/backend-2026.md#reasoning-and-visible-text. It shares
no code with the translator, so the translator's tests and the end-to-end tests can
compare against it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "chatgpt"
if not FIXTURES.is_dir():
    FIXTURES = Path("/work/shared/fixtures/chatgpt")

COMPLETE = [
    "delta_v1/ctxrun_gpt-5-3_hi_2026-03.sse",
    "delta_v1/fira_gpt-5-2_20-famous-people_2026-01.sse",
    "delta_v1/fira_paste_gpt-5-2_famous-people_A_2026-01.sse",
    "delta_v1/fira_paste_gpt-5-2_famous-people_B_2026-01.sse",
    "delta_v1/mldemo_gpt-4o-canmore_myfiles_browser_2024-10.sse",
    "delta_v1/mldemo_gpt-4o_2024-10_empty-data-line.sse",
    "legacy/webchatgpt_text-davinci-002-render-sha_moderation_2023-12_A.sse",
    "legacy/webchatgpt_text-davinci-002-render-sha_moderation_2023-12_B.sse",
]


def ref_events(raw: bytes) -> list[tuple[str, str]]:
    text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    out = []
    for block in text.split("\n\n"):
        name, datas = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                datas.append(line[5:].strip())
        if datas:
            out.append((name, "\n".join(datas)))
    return out


def ref_apply(root: Any, p: str, o: str, v: Any) -> Any:
    if o == "patch":
        for sub in v:
            root = ref_apply(root, sub["p"], sub["o"], sub.get("v"))
        return root
    keys = [k.replace("~1", "/").replace("~0", "~") for k in p.split("/")[1:]] if p else []
    if not keys:
        return copy.deepcopy(v)
    root = copy.deepcopy(root)
    parent = root
    for k in keys[:-1]:
        parent = parent[int(k)] if isinstance(parent, list) else parent[k]
    last: Any = keys[-1]
    if isinstance(parent, list):
        last = len(parent) if last == "-" else int(last)
    if o in ("add", "replace"):
        if isinstance(parent, list) and last == len(parent):
            parent.append(v)
        else:
            parent[last] = v
    elif o == "remove":
        del parent[last]
    elif o == "truncate":
        parent[last] = parent[last][:v]
    elif o == "append":
        if isinstance(parent, dict):
            cur = parent.get(last)
        else:
            cur = parent[last] if last < len(parent) else None
        if isinstance(parent, list) and last == len(parent):
            parent.append(v)
        elif isinstance(cur, str):
            parent[last] = cur + v
        elif isinstance(cur, list):
            parent[last] = cur + (v if isinstance(v, list) else [v])
        elif isinstance(cur, dict):
            parent[last] = {**cur, **v}
        else:
            parent[last] = v
    return root


def ref_final_messages(raw: bytes) -> list[dict[str, Any]]:
    docs: dict[Any, Any] = {}
    c, p, o = 0, "", "add"
    for name, data in ref_events(raw):
        if data in ("", "[DONE]"):
            continue
        obj = json.loads(data)
        if not isinstance(obj, dict):
            continue
        if name == "delta":
            c = obj.get("c", c)
            p = obj.get("p", "" if "c" in obj else p)
            o = obj.get("o", "add" if "c" in obj else o)
            docs[c] = ref_apply(docs.get(c), p, o, obj.get("v"))
        elif isinstance(obj.get("message"), dict):
            docs[obj["message"]["id"]] = obj
    return [d["message"] for d in docs.values()]


def ref_visible(msg: dict[str, Any]) -> bool:
    md = msg.get("metadata") or {}
    return (
        msg["author"]["role"] == "assistant"
        and msg.get("recipient") in (None, "", "all")
        and msg["content"]["content_type"] in ("text", "multimodal_text")
        and md.get("is_visually_hidden_from_conversation") is not True
        and md.get("is_thinking_preamble_message") is not True
        and (
            msg.get("channel") == "final"
            or (msg.get("channel") is None and msg.get("end_turn") is True)
        )
    )


def ref_answer(raw: bytes) -> str:
    return "\n\n".join(
        "".join(x for x in m["content"]["parts"] if isinstance(x, str))
        for m in ref_final_messages(raw)
        if ref_visible(m)
    )
