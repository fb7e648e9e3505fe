"""service/images.py: the ``POST /v1/images/generations`` body, checked like OpenAI does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from errors import InvalidRequest
from service.images import ImageRequest, image_prompt, parse_image_request


def parse(**body: Any) -> ImageRequest:
    return parse_image_request(json.dumps(body).encode())


def test_defaults() -> None:
    req = parse(prompt="a kite")
    assert (req.model, req.n, req.response_format) == ("gpt-image-1", 1, "url")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "prompt"),
        ({"prompt": "  "}, "prompt"),
        ({"prompt": 3}, "prompt"),
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "n": 11}, "n"),
        ({"prompt": "x", "n": True}, "n"),
        ({"prompt": "x", "response_format": "png"}, "response_format"),
        ({"prompt": "x", "size": 1024}, "size"),
        ({"prompt": "x", "model": ["dall-e-3"]}, "model"),
    ],
)
def test_bad_bodies_name_the_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse(**body)
    assert info.value.param == param and info.value.status == 400


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b"\xff"])
def test_bodies_that_are_not_objects(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        parse_image_request(raw)


def test_prompt_carries_size_and_style_hints() -> None:
    assert image_prompt(parse(prompt="a kite")) == "Generate an image: a kite"
    hinted = image_prompt(parse(prompt="a kite", size="1024x1792", style="vivid"))
    assert hinted.endswith("(size 1024x1792, vivid style)")
    assert image_prompt(parse(prompt="a kite", size="auto")) == "Generate an image: a kite"
