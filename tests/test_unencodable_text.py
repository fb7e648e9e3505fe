"""Text that cannot be encoded as UTF-8 (lone surrogates from ``\\ud800`` escapes in
JSON, or raw bytes decoded with ``surrogateescape``) never breaks an answer or a log
line: it stays escaped. Found by ``tests/test_e2e_fuzz.py``."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from errors import AuthenticationFailed, InvalidRequest, printable
from service.api import ApiApp, bearer_of
from settings.model_table import parse_model_table
from translator.chunks import ChunkEncoder, json_bytes


def test_error_messages_are_printable() -> None:
    error = InvalidRequest("Invalid value: '\ud800'.")
    assert error.message == "Invalid value: '\\ud800'."
    assert str(error) == error.message
    json_bytes(error.to_dict()).decode("utf-8")
    assert printable("café 🙂") == "café 🙂"


def test_answers_with_lone_surrogates_stay_valid_utf8_json() -> None:
    encoder = ChunkEncoder(completion_id="chatcmpl-x", created=1, model="m", include_usage=False)
    encoder.start()
    event = encoder.content("a\ud800b café")
    text = event.decode("utf-8")  # encodable
    assert json.loads(text[len("data: ") :])["choices"][0]["delta"]["content"] == "a\ud800b café"
    assert json.loads(json_bytes({"t": "x\udcff"})) == {"t": "x\udcff"}
    assert json_bytes({"t": "café"}) == '{"t": "café"}'.encode()  # readable when it can be


def test_a_key_that_is_not_utf8_is_a_401() -> None:
    with pytest.raises(AuthenticationFailed):
        bearer_of({"authorization": "Bearer \udcff\udcfe"})
    assert bearer_of({"authorization": "Bearer sk-ok"}) == "sk-ok"


def test_the_request_path_answers_and_logs_such_text(caplog: pytest.LogCaptureFixture) -> None:
    app = ApiApp(
        api_root="/v1",
        models=parse_model_table(None),
        unknown_model="default",
        completions=None,  # type: ignore[arg-type]  # never reached: the body is refused
        max_body_bytes=1 << 20,
        history_disabled=True,
    )
    body = b'{"model": "gpt-4o", "messages": [{"role": "\\ud800", "content": "x"}]}'
    with caplog.at_level(logging.INFO):
        reply = asyncio.run(app.handle("POST", "/v1/chat/completions", {}, body))
    assert reply.status == 400
    error = json.loads(reply.body.decode("utf-8"))["error"]  # type: ignore[union-attr]
    assert "\\ud800" in error["message"]
