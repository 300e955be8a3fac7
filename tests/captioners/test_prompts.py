"""Versioned prompts: the fine-grained aspects are asked for, alt text is filled safely."""

from __future__ import annotations

import pytest

from captioners import PROMPTS, CaptionContext, get_prompt

ASPECTS = (
    "age range", "expression", "gaze", "hair (colour, length and style)", "facial hair",
    "make-up", "glasses", "accessories", "clothing", "pose", "hands", "number of people",
    "setting", "background", "lighting", "framing", "shot type", "style",
)  # fmt: skip


@pytest.mark.parametrize("version", sorted(PROMPTS))
def test_every_prompt_asks_for_every_aspect(version: str) -> None:
    prompt = PROMPTS[version]
    assert prompt.version == version
    assert [a for a in ASPECTS if a not in prompt.long] == []


def test_alt_text_is_filled_only_where_asked() -> None:
    context = CaptionContext("x", "A {curly} caption")
    assert "{curly}" not in get_prompt("v1").render_long(context)
    assert '"A {curly} caption"' in get_prompt("v2").render_long(context)
    assert '""' in get_prompt("v2").render_short(CaptionContext("y"))


def test_unknown_version_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"known: \['v1', 'v2'\]"):
        get_prompt("v9")
