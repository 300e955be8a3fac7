"""Words for measured attributes: who, how they are framed, posed, lit, and what they do.

Pure functions from numbers to English phrases, composed into sentences by
``captioners.attributes``. Thresholds that depend on a filter's scale are arguments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

_COUNT_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DECADES = {2: "twenties", 3: "thirties", 4: "forties", 5: "fifties", 6: "sixties"}
_DECADES.update({7: "seventies", 8: "eighties", 9: "nineties"})

# Shot types by main-face box area over image area. Tight detector boxes (brows to chin)
# cover about 10% of a head-and-shoulders portrait and about 3% of a waist-up medium shot
# (measured on grace_hopper.jpg and skimage's astronaut with dlib's HOG detector; MediaPipe's
# looser boxes give 13% and 4.1%, the same shots).
_SHOTS = ((0.30, "extreme close-up"), (0.08, "close-up"), (0.02, "medium shot"))
_SHOT_WIDE = (0.005, "full shot")

# Head pose bands in degrees of |yaw|: frontal under 15, three-quarter view from 35, profile
# from 60 (the usual bins of head-pose benchmarks such as AFLW2000 / BIWI analyses).
_FRONTAL_MAX, _SLIGHT_MAX, _THREE_QUARTER_MAX = 15.0, 35.0, 60.0
_TILT_MIN = 15.0  # |roll| from which a tilt is visible
# Verb phrases as (singular, plural): singular "they" takes the plural verb.
_POSES = (
    (_FRONTAL_MAX, ("faces the camera", "face the camera")),
    (_SLIGHT_MAX, ("turns slightly away from the camera", "turn slightly away from the camera")),
    (_THREE_QUARTER_MAX, ("is seen in three-quarter view", "are seen in three-quarter view")),
    (float("inf"), ("is seen in profile", "are seen in profile")),
)
_GRID = tuple(
    tuple(f"{where} of the frame" for where in row)
    for row in (
        ("in the upper left", "at the top", "in the upper right"),
        ("on the left", "in the center", "on the right"),
        ("in the lower left", "at the bottom", "in the lower right"),
    )
)


@dataclass(frozen=True)
class Person:
    """How to refer to the main person: a noun phrase and pronouns."""

    noun: str  # "a woman in her forties", "a person"
    subject: str  # "She", "He", "They"
    possessive: str  # "her", "his", "their"
    plural_verb: bool  # singular they: "They face ..."


def gender_key(gender: str | None) -> str | None:
    """``"F"``, ``"M"`` or ``None`` from the spellings detectors use (F/M, female/male, ...)."""
    if not gender:
        return None
    first = gender.strip().upper()[:1]
    if first in ("F", "W"):
        return "F"
    return "M" if first == "M" else None


def person(age: float | None, gender: str | None) -> Person:
    """Noun phrase and pronouns for one person from the detector's age and gender."""
    key = gender_key(gender)
    subject, possessive = {"F": ("She", "her"), "M": ("He", "his")}.get(
        key or "", ("They", "their")
    )
    adult = {"F": "woman", "M": "man"}.get(key or "", "person")
    if age is None:
        noun = f"a {adult}"
    elif age < 13:
        noun = "a " + {"F": "girl", "M": "boy"}.get(key or "", "child")
    elif age < 20:
        noun = "a " + {"F": "teenage girl", "M": "teenage boy"}.get(key or "", "teenager")
    else:
        decade = _DECADES[min(int(age) // 10, 9)]
        noun = f"a {adult} in {possessive} {decade}"
    return Person(noun, subject, possessive, plural_verb=key is None)


def people_count(count: int) -> str:
    """ "two people" ... "nine people", then "a large group of people"."""
    if count < len(_COUNT_WORDS):
        return f"{_COUNT_WORDS[count]} people"
    return "a large group of people"


def orientation(width: float | None, height: float | None) -> str | None:
    """ "horizontal", "vertical" or "square" (within 15% of 1:1), or None without sizes."""
    if not width or not height:
        return None
    ratio = width / height
    if ratio > 1.15:
        return "horizontal"
    return "vertical" if ratio < 1 / 1.15 else "square"


def shot_type(area_fraction: float | None) -> str | None:
    """Camera framing from the main face's share of the image area."""
    if area_fraction is None:
        return None
    for minimum, name in _SHOTS:
        if area_fraction >= minimum:
            return name
    return _SHOT_WIDE[1] if area_fraction >= _SHOT_WIDE[0] else "wide shot"


def pose(yaw: float | None, roll: float | None, who: Person) -> str | None:
    """Verb phrase for head pose: "faces the camera and tilts her head"."""
    parts: list[str] = []
    if yaw is not None:
        verbs = next(v for limit, v in _POSES if abs(yaw) < limit)
        parts.append(verbs[who.plural_verb])
    if roll is not None and abs(roll) >= _TILT_MIN:
        parts.append(("tilt " if who.plural_verb else "tilts ") + f"{who.possessive} head")
    return " and ".join(parts) or None


def position(box: Sequence[float] | None, width: float | None, height: float | None) -> str | None:
    """Where the face centre falls on a 3x3 grid of the frame (rule of thirds)."""
    if box is None or len(box) != 4 or not width or not height:
        return None
    cx = (box[0] + box[2]) / 2 / width
    cy = (box[1] + box[3]) / 2 / height
    column = 0 if cx < 1 / 3 else (2 if cx > 2 / 3 else 1)
    row = 0 if cy < 1 / 3 else (2 if cy > 2 / 3 else 1)
    return _GRID[row][column]


def band(value: float | None, low: float, high: float, words: tuple[str, str, str]) -> str | None:
    """``words[0]`` below ``low``, ``words[2]`` above ``high``, else ``words[1]`` ('' = omit)."""
    if value is None:
        return None
    word = words[0] if value < low else (words[2] if value > high else words[1])
    return word or None


# Eyes: MediaPipe iris offset (S.FACE_GAZE_X, in half eye widths) to degrees of eye rotation.
# The iris centre moves r * sin(angle) with an eyeball radius r ~ 12 mm (axial length ~24 mm,
# Bekerman et al., J. Ophthalmol. 2014) while half the eye's corner-to-corner width is ~15 mm
# (exocanthion-endocanthion ~30 mm, Farkas' anthropometry), so offset = 0.8 sin(angle).
_IRIS_OFFSET_PER_SINE = 12.0 / 15.0

# Body orientation bands of |S.BODY_YAW_DEG|: equal 80-degree bands around the profile (90),
# so "side" covers 50-130 and the frontal and back bands what is left on either side.
_BODY_FRONTAL_MAX, _BODY_BACK_MIN = 50.0, 130.0


def _verb(who: Person, singular: str, plural: str) -> str:
    return plural if who.plural_verb else singular


def expression(
    smile: float | None, mouth_open: float | None, smile_min: float, open_min: float, who: Person
) -> str | None:
    """Verb phrase for what the mesh measures of the mouth: "smiles with an open mouth"."""
    smiling = smile is not None and smile >= smile_min
    opened = mouth_open is not None and mouth_open >= open_min
    if smiling:
        return _verb(who, "smiles", "smile") + (" with an open mouth" if opened else "")
    if opened:
        return _verb(who, "has", "have") + f" {who.possessive} mouth open"
    return None


def gaze_yaw_deg(head_yaw: float, gaze_x: float) -> float:
    """Where the eyes point, in degrees of yaw: head yaw plus the eye's turn in the head."""
    sine = max(-1.0, min(1.0, gaze_x / _IRIS_OFFSET_PER_SINE))
    return head_yaw + math.degrees(math.asin(sine))


def eyes(
    openness: tuple[float | None, float | None],
    gaze: tuple[float | None, float | None],
    closed_max: float,
    camera_max_deg: float,
    who: Person,
) -> str | None:
    """Verb phrase for the eyes: closed (both below ``closed_max``), else where they look.

    ``openness`` is (image-left, image-right) eye aspect ratio; ``gaze`` is (iris offset,
    head yaw from the same mesh). "Looks at the camera" when the eyes point within
    ``camera_max_deg`` of it.
    """
    left, right = openness
    if left is not None and right is not None and max(left, right) < closed_max:
        return _verb(who, "has", "have") + f" {who.possessive} eyes closed"
    offset, yaw = gaze
    if offset is None or yaw is None:
        return None
    at_camera = abs(gaze_yaw_deg(yaw, offset)) <= camera_max_deg
    return _verb(who, "looks", "look") + (
        " at the camera" if at_camera else " away from the camera"
    )


def hands(count: float | None) -> str | None:
    """ "One hand is visible." ... ; nothing for no detected hand (a miss proves little)."""
    if not count or count < 1:
        return None
    if count == 1:
        return "One hand is visible."
    words = _COUNT_WORDS[int(count)] if count < len(_COUNT_WORDS) else "Many"
    return f"{words.capitalize()} hands are visible."


def body_framing(
    upper: float | None, full: float | None, yaw: float | None, visible_min: float, who: Person
) -> str | None:
    """Phrase for how much of the body is in frame: "showing her upper body from the side"."""
    if upper is None:
        return None
    if upper < visible_min:
        return f"showing only {who.possessive} head"  # a close-up portrait: no shoulders
    part = "full" if full is not None and full >= visible_min else "upper"
    words = f"showing {who.possessive} {part} body"
    if yaw is not None and abs(yaw) >= _BODY_BACK_MIN:
        return words + " from behind"
    return words + (" from the side" if yaw is not None and abs(yaw) > _BODY_FRONTAL_MAX else "")
