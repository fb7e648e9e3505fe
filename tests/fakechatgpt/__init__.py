"""fakechatgpt: a strict emulator of the ChatGPT web backend for chat2api's tests.

Start it with `python -m tests.fakechatgpt --host 127.0.0.1 --port 0`, or from a test with
`tests.fakechatgpt.harness.run_emulator()`. Modules: `http11` (asyncio HTTP/1.1 plumbing),
`routes` (dispatch, account, files, OAuth, test control), `conversation` (sentinel endpoints,
conversation calls, resume, playback), `sentinel` (config and proof checks), `validation`
(422 bodies), `streams` + `answers` + `deltas` (generated answers), `state` + `tokens`
(what it remembers), `faults` (fault plans and presets). The Codex backend
(`/backend-api/codex/*`, docs/codex-backend.md): `codex` (routes and request rules),
`codex_answers` (what is generated), `codex_events` (the stream, replay), `codex_plan` (its fault
plans), `codex_models` (the catalog).
"""
