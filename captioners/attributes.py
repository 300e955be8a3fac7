"""``attributes``: deterministic captions from measured attributes, no model (embedded default).

A caption is up to six sentences: framing and who ("A square medium shot of a woman in her
forties, showing her upper body."), pose and position, expression and eyes ("She smiles and
looks at the camera."), hands, focus and exposure, and the cleaned alt text. Only what was
measured is said; a missing attribute drops its words, never invents them (a chain without
``face_mesh``, ``body_pose`` or ``hands`` gives the captions of the filters it has).
"""

from __future__ import annotations

import html
import math
import numbers
import re
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from captioners import phrases
from captioners.base import CaptionContext, RawCaption, check_batch
from manifests import schema as S

# Bumped whenever the wording below changes (recorded as the prompt version of each caption).
TEMPLATE_VERSION = "attributes-v2"

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_FILE_EXTENSION = re.compile(r"\.(?:jpe?g|png|gif|webp|bmp|tiff?)\b", re.IGNORECASE)
# Marketplace boilerplate common in LAION alt texts.
_STOCK = re.compile(
    r"\b(?:(?:stock|royalty[- ]free|high[- ]res(?:olution)?|hd)"
    r" (?:photos?|images?|pictures?|footage|vectors?|illustrations?|wallpapers?)"
    r"|royalty[- ]free|free download)\b",
    re.IGNORECASE,
)
_SEPARATORS = re.compile(r"\s*[|•·]+\s*|\s+-\s+")
_ENDS = " \t,;:-–—|/\\'\"."


class AttributesConfig(BaseModel):
    """Wording thresholds on the scales of the filter columns they read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["attributes"] = "attributes"
    short_caption: bool = True  # the first sentence, free to compute
    include_alt_text: bool = True
    alt_text_max_words: int = Field(30, gt=0)
    # S.FACE_SHARPNESS (variance of the Laplacian): 100 is the usual "sharp" rule of thumb
    # for 8-bit images (Pech-Pacheco et al., ICPR 2000, as popularised for OpenCV).
    sharp_min: float = 100.0
    blurry_max: float = 20.0
    # S.FACE_BRIGHTNESS and S.FACE_CONTRAST: mean and std of luma in 0-1.
    dark_max: float = 0.25
    bright_min: float = 0.75
    low_contrast_max: float = 0.08
    high_contrast_min: float = 0.25
    # S.FACE_SMILE (mouth width / outer eye-corner distance): neutral faces measured 0.57-0.58
    # (grace_hopper, the card player in insightface's t1.jpg), smiles 0.67-0.71 (astronaut,
    # two smiling men in t1.jpg); 0.64 lies between.
    smile_min: float = 0.64
    # S.FACE_MOUTH_OPEN (inner-lip gap / mouth width): 0.00 closed (grace_hopper), 0.17 the
    # astronaut's parted smile, 0.20 a laugh in t1.jpg.
    mouth_open_min: float = 0.15
    # S.FACE_EYE_OPENNESS_*: Soukupová & Čech's (CVWW 2016) blink threshold on the eye aspect
    # ratio; both eyes below it read as closed.
    eyes_closed_max: float = 0.2
    # Eye direction within this many degrees of the camera reads as looking at it: the
    # +-15 degree frontal band of the head-pose wording (captioners/phrases.py).
    gaze_camera_max_deg: float = 15.0
    # S.BODY_*_VISIBILITY: MediaPipe's own landmark drawing threshold (drawing_utils.py).
    body_visible_min: float = 0.5

    def build(self) -> AttributesCaptioner:
        return AttributesCaptioner(self)


def clean_alt_text(text: str | None, max_words: int = 30) -> str | None:
    """Alt text fit to quote: no URLs, file names or stock boilerplate; ``None`` if empty."""
    if not text:
        return None
    text = _URL.sub(" ", html.unescape(text)).replace('"', " ").replace("_", " ")
    text = _STOCK.sub(" ", _FILE_EXTENSION.sub("", text))
    parts = (" ".join(p.split()).strip(_ENDS) for p in _SEPARATORS.split(text))
    words = ", ".join(p for p in parts if p).split()[:max_words]
    text = " ".join(words).strip(_ENDS)
    return text if len(text) >= 2 else None


def _number(context: CaptionContext, column: str) -> float | None:
    value = context.get(column)
    # numbers.Real admits numpy scalars (np.float32 from pandas is not a float).
    if value is None or isinstance(value, str | bool) or not isinstance(value, numbers.Real):
        return None
    return None if math.isnan(value) else float(value)


def _box(context: CaptionContext) -> Sequence[float] | None:
    value = context.get(S.FACE_BOX)
    if value is None or isinstance(value, str | int | float):
        return None
    return [float(v) for v in value]


def _area_fraction(context: CaptionContext) -> float | None:
    fraction = _number(context, S.FACE_AREA_FRACTION)
    box, width, height = (
        _box(context),
        _number(context, S.IMG_WIDTH_PX),
        _number(context, S.IMG_HEIGHT_PX),
    )
    if fraction is None and box is not None and width and height:
        fraction = (box[2] - box[0]) * (box[3] - box[1]) / (width * height)
    return fraction


class AttributesCaptioner:
    """Composes captions from ``CaptionContext.attributes``; ignores pixels."""

    needs_pixels = False
    model = "attributes"
    prompt_version = TEMPLATE_VERSION

    def __init__(self, config: AttributesConfig) -> None:
        self.config = config

    def caption(
        self, images: Sequence[np.ndarray], contexts: Sequence[CaptionContext]
    ) -> list[RawCaption]:
        check_batch(images, contexts, self.needs_pixels)
        return [self.caption_one(context) for context in contexts]

    def caption_one(self, context: CaptionContext) -> RawCaption:
        """The caption of one sample (first sentence doubles as the short caption)."""
        alt = clean_alt_text(context.alt_text, self.config.alt_text_max_words)
        alt = alt if self.config.include_alt_text else None
        count = _number(context, S.FACE_COUNT)
        if not count:
            first = self._no_face_sentence(context, count, alt)
            return RawCaption(first, short=first if self.config.short_caption else None)
        who = phrases.person(_number(context, S.FACE_AGE), _text(context, S.FACE_GENDER))
        sentences = [
            self._framing_sentence(context, int(count), who),
            self._pose_sentence(context, int(count), who),
            self._expression_sentence(context, int(count), who),
            phrases.hands(_number(context, S.HAND_COUNT)),
            self._quality_sentence(context, int(count), who),
            f'The photo is captioned "{alt}".' if alt else None,
        ]
        text = " ".join(s for s in sentences if s)
        return RawCaption(text, short=sentences[0] if self.config.short_caption else None)

    def _no_face_sentence(
        self, context: CaptionContext, count: float | None, alt: str | None
    ) -> str:
        shape = _orientation(context)
        words = f"A {shape} photo" if shape else "A photo"
        if count == 0:
            words += " without a visible face" + ("," if alt else "")
        return words + (f' captioned "{alt}".' if alt else ".")

    def _framing_sentence(self, context: CaptionContext, count: int, who: phrases.Person) -> str:
        shape, shot = _orientation(context), phrases.shot_type(_area_fraction(context))
        kind = " ".join(w for w in (shape, shot or "photo") if w)
        people = who.noun if count == 1 else phrases.people_count(count)
        # Pose finds one person; in a group it need not be the main face's, so say nothing.
        body = self._body(context, who) if count == 1 else None
        return f"{_article(kind)} {kind} of {people}" + (f", {body}." if body else ".")

    def _body(self, context: CaptionContext, who: phrases.Person) -> str | None:
        return phrases.body_framing(
            _number(context, S.BODY_UPPER_VISIBILITY), _number(context, S.BODY_FULL_VISIBILITY),
            _number(context, S.BODY_YAW_DEG), self.config.body_visible_min, who,
        )  # fmt: skip

    def _expression_sentence(
        self, context: CaptionContext, count: int, who: phrases.Person
    ) -> str | None:
        c = self.config
        if count > 1:
            who = phrases.Person(who.noun, "The most prominent person", "their", False)
        mouth = phrases.expression(
            _number(context, S.FACE_SMILE), _number(context, S.FACE_MOUTH_OPEN),
            c.smile_min, c.mouth_open_min, who,
        )  # fmt: skip
        openness = (
            _number(context, S.FACE_EYE_OPENNESS_LEFT),
            _number(context, S.FACE_EYE_OPENNESS_RIGHT),
        )
        gaze = (_number(context, S.FACE_GAZE_X), _number(context, S.FACE_MESH_YAW_DEG))
        eyes = phrases.eyes(openness, gaze, c.eyes_closed_max, c.gaze_camera_max_deg, who)
        verbs = " and ".join(v for v in (mouth, eyes) if v)
        return f"{who.subject} {verbs}." if verbs else None

    def _pose_sentence(
        self, context: CaptionContext, count: int, who: phrases.Person
    ) -> str | None:
        group = count > 1
        if group:
            apposition = "" if who.noun.startswith("a person") else f", {who.noun},"
            subject = f"The most prominent person{apposition}"
            who = phrases.Person(who.noun, subject, who.possessive, plural_verb=False)
        yaw, roll = _number(context, S.FACE_YAW_DEG), _number(context, S.FACE_ROLL_DEG)
        verb = phrases.pose(yaw, roll, who)
        where = phrases.position(
            _box(context), _number(context, S.IMG_WIDTH_PX), _number(context, S.IMG_HEIGHT_PX)
        )
        if verb and where:
            return f"{who.subject} {verb}, with {who.possessive} face {where}."
        if verb:
            return f"{who.subject} {verb}."
        if where:
            return (
                f"{who.possessive.capitalize()} face is {where}."
                if not group
                else (f"The most prominent face is {where}.")
            )
        return None

    def _quality_sentence(
        self, context: CaptionContext, count: int, who: phrases.Person
    ) -> str | None:
        c = self.config
        focus = phrases.band(
            _number(context, S.FACE_SHARPNESS), c.blurry_max, c.sharp_min,
            ("blurred", "slightly soft", "in sharp focus"),
        )  # fmt: skip
        light = phrases.band(
            _number(context, S.FACE_BRIGHTNESS), c.dark_max, c.bright_min,
            ("dimly lit", "well exposed", "brightly lit"),
        )  # fmt: skip
        contrast = phrases.band(
            _number(context, S.FACE_CONTRAST), c.low_contrast_max, c.high_contrast_min,
            ("low", "", "strong"),
        )  # fmt: skip
        owner = "The main" if count > 1 else who.possessive.capitalize()
        states = " and ".join(w for w in (focus, light) if w)
        if states:
            return f"{owner} face is {states}" + (
                f", with {contrast} contrast." if contrast else "."
            )
        return f"{owner} face has {contrast} contrast." if contrast else None


def _text(context: CaptionContext, column: str) -> str | None:
    value = context.get(column)
    return value if isinstance(value, str) else None


def _orientation(context: CaptionContext) -> str | None:
    return phrases.orientation(_number(context, S.IMG_WIDTH_PX), _number(context, S.IMG_HEIGHT_PX))


def _article(word: str) -> str:
    return "An" if word[:1].lower() in "aeiou" else "A"
