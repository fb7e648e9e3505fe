"""`python -m tests.fakechatgpt --host H --port P [...]`: run the emulator until killed."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from .http11 import serve
from .routes import App
from .sentinel import valid_difficulty
from .state import State

DEFAULT_DIFFICULTY = "0fffff"  # about 16 hashes: cheap, but a wrong proof still fails


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fakechatgpt", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--replay", help="answer every conversation with this capture, verbatim")
    parser.add_argument(
        "--codex-replay", help="answer every Codex call with this capture (.sse or .chunks.jsonl)"
    )
    parser.add_argument(
        "--codex-replay-framing",
        choices=("verbatim", "wire"),
        default="verbatim",
        help="verbatim: the .sse bytes as stored; wire: every event ends with a blank line",
    )
    parser.add_argument("--format", choices=("v1", "legacy"), default="v1")
    parser.add_argument("--pow-difficulty", default=DEFAULT_DIFFICULTY, help="hex, e.g. 0fffff")
    parser.add_argument("--dialect", choices=("classic", "2026", "both"), default="both")
    parser.add_argument("--refresh-tokens", default="", help="comma-separated live refresh tokens")
    args = parser.parse_args(argv)
    if args.codex_replay and not os.path.isfile(args.codex_replay):
        parser.error(f"--codex-replay: no such file {args.codex_replay}")
    if not valid_difficulty(args.pow_difficulty):
        parser.error("--pow-difficulty must be an even-length hex string")
    return args


async def main(args: argparse.Namespace) -> None:
    state = State(
        difficulty=args.pow_difficulty.lower(),
        dialect=args.dialect,
        fmt=args.format,
        replay=args.replay,
        codex_replay=args.codex_replay,
        codex_replay_framing=args.codex_replay_framing,
        refresh_tokens=[t for t in args.refresh_tokens.split(",") if t],
    )
    server = await serve(App(state), args.host, args.port)
    port = server.sockets[0].getsockname()[1]
    public = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    state.base_url = f"http://{public}:{port}"
    print(f"listening on http://{args.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(parse_args()))
