"""``attributes`` captions: golden strings for attribute sets of the test photos."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from captioners.attributes import AttributesConfig, clean_alt_text
from captioners.base import AttributeValue, CaptionContext
from filters import FILTERS
from filters.declarations import caption_context_columns
from manifests import schema as S

# What the filters offer captioners; the caption stage passes the same.
CONTEXT = caption_context_columns(FILTERS)

# What an insightface-class detector measures on skimage's astronaut (Eileen Collins, 512x512).
ASTRONAUT: Mapping[str, AttributeValue] = {
    S.FACE_COUNT: 1, S.IMG_WIDTH_PX: 512, S.IMG_HEIGHT_PX: 512,
    S.FACE_BOX: [168.0, 60.0, 275.0, 190.0], S.FACE_SIZE_PX: 107.0, S.FACE_AREA_FRACTION: 0.053,
    S.FACE_YAW_DEG: -6.0, S.FACE_ROLL_DEG: 4.0, S.FACE_PITCH_DEG: 3.0,
    S.FACE_AGE: 41.0, S.FACE_GENDER: "F",
    S.FACE_SHARPNESS: 240.0, S.FACE_BRIGHTNESS: 0.52, S.FACE_CONTRAST: 0.19,
}  # fmt: skip
# grace_hopper.jpg (512x600): a head-and-shoulders portrait, slightly soft, strong contrast.
GRACE_HOPPER: Mapping[str, AttributeValue] = {
    S.FACE_COUNT: 1, S.IMG_WIDTH_PX: 512, S.IMG_HEIGHT_PX: 600,
    S.FACE_BOX: [180.0, 139.0, 366.0, 325.0], S.FACE_SIZE_PX: 186.0,
    S.FACE_AREA_FRACTION: 0.1126, S.FACE_YAW_DEG: 9.0, S.FACE_ROLL_DEG: -3.0,
    S.FACE_AGE: 73.0, S.FACE_GENDER: "F",
    S.FACE_SHARPNESS: 64.0, S.FACE_BRIGHTNESS: 0.46, S.FACE_CONTRAST: 0.27,
}  # fmt: skip
# A dusk photo of two people from dlib (no age or gender); the main face is turned and tilted.
GROUP: Mapping[str, AttributeValue] = {
    S.FACE_COUNT: 2, S.IMG_WIDTH_PX: 800, S.IMG_HEIGHT_PX: 533,
    S.FACE_BOX: [400.0, 80.0, 480.0, 180.0], S.FACE_AREA_FRACTION: None,
    S.FACE_YAW_DEG: 40.0, S.FACE_ROLL_DEG: 20.0, S.FACE_PITCH_DEG: None,
    S.FACE_AGE: None, S.FACE_GENDER: None,
    S.FACE_SHARPNESS: 15.0, S.FACE_BRIGHTNESS: 0.2, S.FACE_CONTRAST: 0.05,
}  # fmt: skip
COFFEE: Mapping[str, AttributeValue] = {S.FACE_COUNT: 0, S.IMG_WIDTH_PX: 600, S.IMG_HEIGHT_PX: 400}

ASTRONAUT_ALT = "Eileen Collins, NASA astronaut, in her flight suit | Stock Photo"
HOPPER_ALT = (
    "Commodore Grace M. Hopper, USN (covered) - official portrait https://www.navy.mil/hopper.jpg"
)
GOLDEN = [
    (
        ASTRONAUT,
        ASTRONAUT_ALT,
        "A square medium shot of a woman in her forties. She faces the camera, with her face "
        "at the top of the frame. Her face is in sharp focus and well exposed. The photo is "
        'captioned "Eileen Collins, NASA astronaut, in her flight suit".',
        "A square medium shot of a woman in her forties.",
    ),
    (
        GRACE_HOPPER,
        HOPPER_ALT,
        "A vertical close-up of a woman in her seventies. She faces the camera, with her face "
        "in the center of the frame. Her face is slightly soft and well exposed, with strong "
        'contrast. The photo is captioned "Commodore Grace M. Hopper, USN (covered), official '
        'portrait".',
        "A vertical close-up of a woman in her seventies.",
    ),
    (
        GROUP,
        "&quot;Two friends at dusk&quot; - royalty free image",
        "A horizontal full shot of two people. The most prominent person is seen in "
        "three-quarter view and tilts their head, with their face at the top of the frame. "
        'The main face is blurred and dimly lit, with low contrast. The photo is captioned "Two '
        'friends at dusk".',
        "A horizontal full shot of two people.",
    ),
    ({}, None, "A photo.", "A photo."),
    ({}, "a_cup_of_coffee.jpg", 'A photo captioned "a cup of coffee".', None),
    (COFFEE, None, "A horizontal photo without a visible face.", None),
    (
        COFFEE,
        "Coffee & croissant",
        'A horizontal photo without a visible face, captioned "Coffee & croissant".',
        None,
    ),
]


def _caption(attributes: Mapping[str, AttributeValue], alt: str | None) -> tuple[str, str | None]:
    raw = AttributesConfig().build().caption([], [CaptionContext("id", alt, attributes)])[0]
    return raw.text, raw.short


@pytest.mark.parametrize(("attributes", "alt", "caption", "short"), GOLDEN)
def test_golden_captions(
    attributes: Mapping[str, AttributeValue], alt: str | None, caption: str, short: str | None
) -> None:
    assert _caption(attributes, alt) == (caption, short or caption)


def test_age_and_gender_wording() -> None:
    base = {S.FACE_COUNT: 1}
    nouns = [
        _caption({**base, S.FACE_AGE: age, S.FACE_GENDER: gender}, None)[1]
        for age, gender in [(8.0, "M"), (16.0, "female"), (16.0, None), (25.0, "m"), (99.0, "F")]
    ]
    assert nouns == [
        "A photo of a boy.",
        "A photo of a teenage girl.",
        "A photo of a teenager.",
        "A photo of a man in his twenties.",
        "A photo of a woman in her nineties.",
    ]


def test_pose_and_position_wording() -> None:
    attributes = {**ASTRONAUT, S.FACE_YAW_DEG: 75.0, S.FACE_ROLL_DEG: -30.0}
    attributes[S.FACE_BOX] = [10.0, 400.0, 60.0, 460.0]
    text, _ = _caption(attributes, None)
    assert "She is seen in profile and tilts her head, with her face in the lower left" in text
    text, _ = _caption({**ASTRONAUT, S.FACE_YAW_DEG: None, S.FACE_ROLL_DEG: None}, None)
    assert "Her face is at the top of the frame." in text


def test_nan_and_missing_values_drop_their_words() -> None:
    sparse = {S.FACE_COUNT: 3, S.FACE_SHARPNESS: float("nan"), S.FACE_CONTRAST: 0.3}
    assert _caption(sparse, None)[0] == (
        "A photo of three people. The main face has strong contrast."
    )


def test_alt_text_is_optional_and_shortened() -> None:
    config = AttributesConfig(include_alt_text=False, short_caption=False)
    raw = config.build().caption([], [CaptionContext("id", ASTRONAUT_ALT, ASTRONAUT)])[0]
    assert "captioned" not in raw.text and raw.short is None
    assert clean_alt_text("one two three four", max_words=2) == "one two"
    assert clean_alt_text("  | - ") is None


def test_context_from_a_manifest_row() -> None:
    row = {S.SAMPLE_ID: "abc", S.ALT_TEXT: ASTRONAUT_ALT, S.URL: "http://x", **ASTRONAUT}
    context = CaptionContext.from_row(row, CONTEXT)
    assert (context.sample_id, context.alt_text) == ("abc", ASTRONAUT_ALT)
    assert dict(context.attributes) == dict(ASTRONAUT)  # the URL is not an attribute
    assert CaptionContext.from_row({S.SAMPLE_ID: "n", S.ALT_TEXT: None}, CONTEXT).attributes == {}


def test_numpy_values_read_like_python_values() -> None:
    import numpy as np

    as_numpy = {
        k: (np.asarray(v, np.float32) if isinstance(v, list) else np.float32(v))
        for k, v in GRACE_HOPPER.items()
        if k != S.FACE_GENDER
    }
    as_numpy[S.FACE_COUNT] = np.int32(1)
    as_numpy[S.FACE_GENDER] = "F"
    assert _caption(as_numpy, HOPPER_ALT) == _caption(GRACE_HOPPER, HOPPER_ALT)


# face_mesh, body_pose and hands columns as measured on the astronaut (filters/face_mesh.py,
# filters/body_pose.py): a parted smile at the camera, waist-up, torso turned ~26 degrees.
ASTRONAUT_MESH: Mapping[str, AttributeValue] = {
    S.FACE_EYE_OPENNESS_LEFT: 0.33, S.FACE_EYE_OPENNESS_RIGHT: 0.32, S.FACE_MOUTH_OPEN: 0.17,
    S.FACE_SMILE: 0.71, S.FACE_GAZE_X: -0.03, S.FACE_MESH_YAW_DEG: -1.4,
    S.BODY_UPPER_VISIBILITY: 0.998, S.BODY_FULL_VISIBILITY: 0.0, S.BODY_YAW_DEG: 26.4,
    S.HAND_COUNT: 1,
}  # fmt: skip
# grace_hopper with a neutral mouth, eyes turned ~22 degrees off the camera, no shoulders.
HOPPER_MESH: Mapping[str, AttributeValue] = {
    S.FACE_EYE_OPENNESS_LEFT: 0.26, S.FACE_EYE_OPENNESS_RIGHT: 0.26, S.FACE_MOUTH_OPEN: 0.0,
    S.FACE_SMILE: 0.58, S.FACE_GAZE_X: -0.3, S.FACE_MESH_YAW_DEG: 0.3,
    S.BODY_UPPER_VISIBILITY: 0.2, S.BODY_FULL_VISIBILITY: 0.0, S.HAND_COUNT: 0,
}  # fmt: skip


def test_expression_eyes_hands_and_body_framing() -> None:
    text, short = _caption({**ASTRONAUT, **ASTRONAUT_MESH}, None)
    assert text == (
        "A square medium shot of a woman in her forties, showing her upper body. She faces the "
        "camera, with her face at the top of the frame. She smiles with an open mouth and looks "
        "at the camera. One hand is visible. Her face is in sharp focus and well exposed."
    )
    assert short == "A square medium shot of a woman in her forties, showing her upper body."
    text, _ = _caption({**GRACE_HOPPER, **HOPPER_MESH}, None)
    assert text == (
        "A vertical close-up of a woman in her seventies, showing only her head. She faces the "
        "camera, with her face in the center of the frame. She looks away from the camera. Her "
        "face is slightly soft and well exposed, with strong contrast."
    )


def test_group_eyes_closed_and_many_hands() -> None:
    group = {
        **GROUP, **ASTRONAUT_MESH, S.FACE_EYE_OPENNESS_LEFT: 0.03,
        S.FACE_EYE_OPENNESS_RIGHT: 0.1, S.FACE_MOUTH_OPEN: 0.2, S.FACE_SMILE: 0.5,
        S.HAND_COUNT: 3,
    }  # fmt: skip
    text, short = _caption(group, None)
    assert text == (
        "A horizontal full shot of two people. The most prominent person is seen in "
        "three-quarter view and tilts their head, with their face at the top of the frame. The "
        "most prominent person has their mouth open and has their eyes closed. Three hands are "
        "visible. The main face is blurred and dimly lit, with low contrast."
    )
    assert short == "A horizontal full shot of two people."  # pose may be another person's


@pytest.mark.parametrize(
    ("scores", "caption"),
    [
        (
            {S.BODY_UPPER_VISIBILITY: 0.9, S.BODY_FULL_VISIBILITY: 0.7, S.BODY_YAW_DEG: 170.0},
            "A photo of a person, showing their full body from behind.",
        ),
        (
            {S.BODY_UPPER_VISIBILITY: 0.9, S.BODY_FULL_VISIBILITY: 0.1, S.BODY_YAW_DEG: -95.0},
            "A photo of a person, showing their upper body from the side.",
        ),
        # One eye closed is not "eyes closed"; turned head and eyes that turn back: at the camera.
        (
            {S.FACE_EYE_OPENNESS_LEFT: 0.1, S.FACE_EYE_OPENNESS_RIGHT: 0.3,
             S.FACE_GAZE_X: -0.4, S.FACE_MESH_YAW_DEG: 25.0},
            "A photo of a person. They look at the camera.",
        ),
        ({S.FACE_SMILE: 0.7, S.FACE_MOUTH_OPEN: 0.05}, "A photo of a person. They smile."),
        ({S.HAND_COUNT: 12}, "A photo of a person. Many hands are visible."),
        ({S.HAND_COUNT: 0, S.FACE_SMILE: None}, "A photo of a person."),
    ],
)  # fmt: skip
def test_body_and_face_wording(scores: Mapping[str, AttributeValue], caption: str) -> None:
    assert _caption({S.FACE_COUNT: 1, **scores}, None)[0] == caption


def test_new_scores_are_context_columns() -> None:
    row = {S.SAMPLE_ID: "abc", **ASTRONAUT, **ASTRONAUT_MESH}
    assert dict(CaptionContext.from_row(row, CONTEXT).attributes) == {**ASTRONAUT, **ASTRONAUT_MESH}
