"""Versioned captioning prompts.

Each version is recorded per sample (``S.CAPTION_PROMPT_VERSION``), so a prompt is never edited
in place: a change is a new version (``v3``, ...) and the old text stays here, so every caption
in an existing corpus can still be traced to the exact words that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

from captioners.base import CaptionContext

# The aspects the corpus is built to describe (LAION-Face-T2I: fine-grained human captions).
_ASPECTS_V1 = (
    "the number of people; for the main person: apparent age range, expression, gaze "
    "direction, hair (colour, length and style), facial hair, make-up, glasses and other "
    "accessories, clothing, body pose and what the hands are doing; the setting and "
    "background; the lighting; the camera framing and shot type (close-up, medium shot, "
    "full body ...); and the photo's style (studio portrait, candid snapshot, film still, "
    "illustration ...)"
)

_LONG_V1 = (
    "Describe this photo in one detailed paragraph for a text-to-image dataset. Cover "
    + _ASPECTS_V1
    + ". Describe only what is visible; do not guess names, identities or ethnicity. Do not "
    "start with 'The image shows' or similar; start directly with the subject."
)
_SHORT_V1 = (
    "Write one short sentence (at most 20 words) describing the main person in this photo, "
    "the shot type and the setting. Start directly with the subject."
)
_ALT_HINT_V2 = (
    " The photo was published with this text, which may be inaccurate or unrelated: "
    '"{alt_text}". Use it only to understand the context; never copy names from it.'
)


@dataclass(frozen=True)
class Prompt:
    """One prompt version: the long (fine-grained) and the short instruction.

    Texts may contain ``{alt_text}``, filled with the sample's alt text (empty when absent).
    """

    version: str
    long: str
    short: str

    def render_long(self, context: CaptionContext) -> str:
        """The long instruction for one sample."""
        return _fill(self.long, context)

    def render_short(self, context: CaptionContext) -> str:
        """The short instruction for one sample."""
        return _fill(self.short, context)


def _fill(template: str, context: CaptionContext) -> str:
    # str.replace, not str.format: alt texts contain braces.
    return template.replace("{alt_text}", (context.alt_text or "").strip())


PROMPTS: dict[str, Prompt] = {
    "v1": Prompt("v1", long=_LONG_V1, short=_SHORT_V1),
    # v1 plus the alt text as a hint: better settings and events, at the risk of copying.
    "v2": Prompt("v2", long=_LONG_V1 + _ALT_HINT_V2, short=_SHORT_V1 + _ALT_HINT_V2),
}
DEFAULT_PROMPT_VERSION = "v1"


def get_prompt(version: str) -> Prompt:
    """The prompt registered as ``version``; ``KeyError`` lists the known versions."""
    try:
        return PROMPTS[version]
    except KeyError:
        raise KeyError(f"unknown prompt version {version!r}; known: {sorted(PROMPTS)}") from None


def _known_version(version: str) -> str:
    if version not in PROMPTS:
        raise ValueError(f"unknown prompt version {version!r}; known: {sorted(PROMPTS)}")
    return version


# A config field holding a prompt version: validated against PROMPTS at config load.
PromptVersion = Annotated[str, AfterValidator(_known_version)]
