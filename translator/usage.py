"""Token counts with OpenAI's encodings, entirely offline.

tiktoken normally downloads its BPE rank files on first use; this machine (and many deployments)
cannot, and a request must never wait on a download.  The two rank files chat models use are
vendored gzipped under ``translator/encodings/`` (taken from the MIT-licensed ``bpe-openai==0.1.4``
wheel), checked against the SHA-256 that tiktoken 0.14 pins in ``tiktoken_ext/openai_public.py``,
and turned into :class:`tiktoken.Encoding` objects here with that file's split pattern and special
tokens.  Each encoding is built once per process, on first use.

The prompt estimate follows OpenAI's published chat formula (reference-chat2api.md §7.3):
3 tokens per message, the encoded role, content text and other fields, 1 more for a ``name``,
and 3 to prime the reply; images by the tile formula when their size is known, else 85.
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import io
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import tiktoken

from translator.backend_body import AttachmentLike
from translator.request import (
    FilePart,
    ImagePart,
    InputAudioPart,
    Message,
    TextPart,
)

ENCODINGS_DIR = Path(__file__).with_name("encodings")

ENDOFTEXT = "<|endoftext|>"
FIM_PREFIX = "<|fim_prefix|>"
FIM_MIDDLE = "<|fim_middle|>"
FIM_SUFFIX = "<|fim_suffix|>"
ENDOFPROMPT = "<|endofprompt|>"


@dataclass(frozen=True, kw_only=True)
class EncodingSpec:
    """What tiktoken_ext/openai_public.py says about one encoding."""

    name: str
    sha256: str  # of the decompressed .tiktoken file
    pat_str: str
    special_tokens: Mapping[str, int]

    @property
    def path(self) -> Path:
        return ENCODINGS_DIR / f"{self.name}.tiktoken.gz"


CL100K_BASE = EncodingSpec(
    name="cl100k_base",
    sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    pat_str=(
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
        r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    ),
    special_tokens={
        ENDOFTEXT: 100257,
        FIM_PREFIX: 100258,
        FIM_MIDDLE: 100259,
        FIM_SUFFIX: 100260,
        ENDOFPROMPT: 100276,
    },
)

O200K_BASE = EncodingSpec(
    name="o200k_base",
    sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    pat_str="|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
    special_tokens={ENDOFTEXT: 199999, ENDOFPROMPT: 200018},
)

SPECS: Mapping[str, EncodingSpec] = {s.name: s for s in (CL100K_BASE, O200K_BASE)}

# cl100k_base: GPT-4 (not 4o/4.1/4.5) and GPT-3.5, as in tiktoken's model table; every newer
# name (4o, 4.1, 4.5, o-series, gpt-5, unknown) uses o200k_base.  Anchored, so that "gpt-4o" is
# not taken for "gpt-4" (the substring mistake of reference §2.5).
_CL100K_NAMES = re.compile(
    r"(?:ft:)?(?:gpt-4(?:-(?!1$|1-mini$|1-nano$|5$)|$)|gpt-3\.5|gpt-35|"
    r"text-davinci-002-render|text-embedding-|davinci-002|babbage-002)"
)

_lock = threading.Lock()
_cache: dict[str, tiktoken.Encoding] = {}


class EncodingDataError(RuntimeError):
    """A vendored rank file is missing or does not match its pinned hash."""


def read_ranks(spec: EncodingSpec) -> bytes:
    """The decompressed rank file, verified against its pinned SHA-256."""
    try:
        data = gzip.decompress(spec.path.read_bytes())
    except (OSError, EOFError) as exc:
        raise EncodingDataError(f"cannot read {spec.path}: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise EncodingDataError(
            f"{spec.path}: sha256 {digest} does not match the pinned {spec.sha256}"
        )
    return data


def parse_ranks(data: bytes) -> dict[bytes, int]:
    """The mergeable ranks of a ``.tiktoken`` file, as tiktoken's ``load_tiktoken_bpe`` reads them.

    Line by line from one buffer, not through a list of all 200,000 lines (about 13 MB
    for o200k_base) held next to the dict while it fills.
    """
    ranks: dict[bytes, int] = {}
    decode = binascii.a2b_base64
    for line in io.BytesIO(data):
        fields = line.split()
        if fields:
            token, rank = fields
            ranks[decode(token)] = int(rank)
    return ranks


def _build(spec: EncodingSpec) -> tiktoken.Encoding:
    ranks = parse_ranks(read_ranks(spec))
    encoding = tiktoken.Encoding(
        name=spec.name,
        pat_str=spec.pat_str,
        mergeable_ranks=ranks,
        special_tokens=dict(spec.special_tokens),
    )
    # The Rust core keeps its own copies of the ranks (about 41 MB for o200k_base: the
    # encoder, the decoder and a sorted token list); tiktoken holds on to the Python
    # dict only to pickle the Encoding, which chat2api never does. Without it,
    # o200k_base takes about 27 MB less memory (README, "Performance").
    encoding._mergeable_ranks = {}
    return encoding


def get_encoding(name: str) -> tiktoken.Encoding:
    """``cl100k_base`` or ``o200k_base``, built from the vendored files once per process."""
    encoding = _cache.get(name)
    if encoding is not None:
        return encoding
    spec = SPECS.get(name)
    if spec is None:
        raise KeyError(f"no vendored encoding {name!r}; have {', '.join(SPECS)}")
    with _lock:
        encoding = _cache.get(name)
        if encoding is None:
            encoding = _cache[name] = _build(spec)
    return encoding


def encoding_name_for(model: str) -> str:
    """``cl100k_base`` for GPT-4 and GPT-3.5 names, ``o200k_base`` for everything else."""
    return "cl100k_base" if _CL100K_NAMES.match(model) else "o200k_base"


def encoding_for(model: str) -> tiktoken.Encoding:
    return get_encoding(encoding_name_for(model))


def count_text_tokens(text: str, model: str) -> int:
    """Tokens of ``text``; special-token strings in it count as plain text, as in a prompt."""
    if not text:
        return 0
    return len(encoding_for(model).encode_ordinary(text))


def image_tokens(width: int | None, height: int | None, detail: str | None) -> int:
    """OpenAI's tile formula (reference §7.3): 85 for ``low`` or an unknown size."""
    if detail == "low" or not width or not height or width <= 0 or height <= 0:
        return 85
    w, h = float(width), float(height)
    if max(w, h) > 2048:  # fit in a 2048 × 2048 square
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:  # then the shortest side down to 768 (never scaled up)
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    return 170 * math.ceil(w / 512) * math.ceil(h / 512) + 85


def count_prompt_tokens(
    messages: Sequence[Message],
    model: str,
    *,
    attachments_by_part: Mapping[tuple[int, int], AttachmentLike] | None = None,
) -> int:
    """OpenAI's chat prompt estimate for normalised messages (see the module docstring).

    ``attachments_by_part`` (the same mapping the body builder gets) supplies image sizes and
    file sizes; a file counts ``size // 1000`` tokens, as the original did.
    """
    attachments = attachments_by_part or {}
    encoding = encoding_for(model)

    def count(text: str) -> int:
        return len(encoding.encode_ordinary(text)) if text else 0

    total = 3  # every reply is primed with <|start|>assistant<|message|>
    for i, message in enumerate(messages):
        total += 3 + count(message.role)
        if message.name is not None:
            total += 1 + count(message.name)
        if message.tool_call_id is not None:
            total += count(message.tool_call_id)
        for call in message.tool_calls:
            total += count(call.name) + count(call.arguments)
        for j, part in enumerate(message.content):
            attachment = attachments.get((i, j))
            if isinstance(part, TextPart):
                total += count(part.text)
            elif isinstance(part, ImagePart):
                width = attachment.width if attachment is not None else None
                height = attachment.height if attachment is not None else None
                total += image_tokens(width, height, part.detail)
            elif isinstance(part, (FilePart, InputAudioPart)) and attachment is not None:
                total += attachment.size // 1000
    return total


def warm_up() -> None:
    """Build every vendored encoding now (about a second), e.g. when the proxy starts."""
    for name in SPECS:
        get_encoding(name)
