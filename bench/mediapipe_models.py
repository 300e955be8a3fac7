"""The chain's MediaPipe scorers against the TFLite models inside them, on one core.

``face_count`` (MediaPipe face detection), ``hands`` and ``body_pose`` take about half of the
default chain's time (docs/filters.md). This times each filter's ``score`` on one image,
as the chain gives it (a 1024 px photo whose 640 px detection copy ``face_count`` has already
made), against the graph's own TFLite models invoked directly through LiteRT (XNNPACK, one
thread) as often as the graph runs them on that image. The ratio filter / models bounds what
MediaPipe's graph (image conversion, anchors, NMS, crops, its own TFLite build) and this
project's code add to the models' arithmetic, so what running the models outside MediaPipe's
graphs could save at most: near 1, a faster filter needs cheaper models, not less code around
them. LiteRT is a newer TFLite runtime than MediaPipe's, so part of a ratio above 1 can be
kernels, not code.

What each graph runs per image (``static_image_mode``; the graphs are MediaPipe's
``mediapipe/modules/*/*.pbtxt``): face detection: its detector once; hands: the palm detector
once, the landmark model once per palm, up to ``max_hands`` (counted here as the hands
returned, so the models' figure is a lower bound when a palm is found but no hand); pose: the
detector once, the landmark model once when a person is found. ``face_mesh`` is not timed: its
iris-refining landmark model needs a custom op (``Landmarks2TransformMatrix``) that only
MediaPipe's own runtime has.

``--hands-lite`` instead compares ``hands.detector.model_complexity`` 0 (lite) with 1 (full)
on ``t1.jpg``, seven rotated, scaled and mirrored copies of it and five demo photos: hands each
finds on the stage's detection copy (640 px), and lite's hands among full's (box IoU >= 0.5). It
needs no LiteRT.

Needs ``ai-edge-litert`` (``pip install -e '.[bench]'``).

    python bench/mediapipe_models.py --repeats 15
    python bench/mediapipe_models.py --hands-lite
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# As a Dask worker runs: the nanny sets OMP_NUM_THREADS=1 (bench/filter.py).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.*` from anywhere

from bench.detectors import rotated, scaled, t1_photo
from filters import Batch, FaceCountConfig, HandsConfig
from filters.body_pose import BodyPoseConfig
from filters.detection_copy import detection_copy
from filters.hand_detectors import Hand, MediaPipeHandsConfig
from filters.scoring import score_batch
from manifests import schema as S
from pipeline.demo_server import photo_bytes
from stages.filter import FilterStageConfig

# The files inside mediapipe/modules/ that each graph runs, by the setting that selects them.
FACE_MODELS = {
    "full_range": "face_detection/face_detection_full_range_sparse.tflite",
    "short_range": "face_detection/face_detection_short_range.tflite",
}
PALM_MODELS = {0: "palm_detection/palm_detection_lite.tflite",
               1: "palm_detection/palm_detection_full.tflite"}  # fmt: skip
HAND_MODELS = {0: "hand_landmark/hand_landmark_lite.tflite",
               1: "hand_landmark/hand_landmark_full.tflite"}  # fmt: skip
POSE_DETECTOR = "pose_detection/pose_detection.tflite"
POSE_LANDMARKS = "pose_landmark/pose_landmark_full.tflite"  # complexity 1, the one shipped
# The filter stage's detection copy, as the chain makes it.
DETECT_MAX_SIDE = FilterStageConfig().detect_max_side


def median_ms(call: Callable[[], Any], repeats: int) -> float:
    """Median wall ms of ``call`` after one untimed warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


class Models:
    """MediaPipe's bundled TFLite models, each in its own LiteRT interpreter (one thread)."""

    def __init__(self) -> None:
        import mediapipe

        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise SystemExit(f"{error}: pip install -e '.[bench]' (ai-edge-litert)") from error
        self.interpreter = Interpreter
        self.root = Path(mediapipe.__file__).parent / "modules"
        self.interpreters: dict[str, Any] = {}

    def invoke_ms(self, name: str, repeats: int) -> float:
        """Median ms of one ``invoke`` of model ``name`` on an input of its own shape."""
        if name not in self.interpreters:
            interpreter = self.interpreter(model_path=str(self.root / name), num_threads=1)
            interpreter.allocate_tensors()
            self.interpreters[name] = interpreter
        interpreter = self.interpreters[name]
        detail = interpreter.get_input_details()[0]
        pixels = np.random.default_rng(0).random(detail["shape"]).astype(detail["dtype"])

        def run() -> None:
            interpreter.set_tensor(detail["index"], pixels)
            interpreter.invoke()

        return median_ms(run, repeats)


def photos(size: int) -> dict[str, np.ndarray]:
    """The astronaut upscaled to ``size`` px as bench/filter.py downloads it, and t1.jpg."""
    from skimage import data

    astronaut = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_CUBIC)
    return {"astronaut": astronaut, "t1": t1_photo()}


def compare(image: np.ndarray, models: Models, repeats: int) -> list[tuple[str, float, float]]:
    """(filter, filter ms, models ms) for each MediaPipe scorer on ``image``."""
    face_count = FaceCountConfig().build()
    hands_config, pose = HandsConfig(), BodyPoseConfig().build()
    hands = hands_config.build()
    batch = Batch.from_images([image], {S.ALT_TEXT: [""]}, detect_max_side=DETECT_MAX_SIDE)
    # Every filter scores the image, as timed below, even where face_count rejects it (t1.jpg
    # has more faces than it keeps).
    columns = score_batch([face_count, hands, pose], batch, score_rejected=True)
    scored = batch.with_columns(columns)  # the copy is made: face_count and hands share it
    complexity = hands_config.detector.model_complexity
    hand_count = columns[S.HAND_COUNT][0] or 0
    found_pose = columns[S.BODY_UPPER_VISIBILITY][0] is not None
    runs = {
        "face_count": {FACE_MODELS[face_count.config.detector.model]: 1},
        "hands": {PALM_MODELS[complexity]: 1, HAND_MODELS[complexity]: hand_count},
        "body_pose": {POSE_DETECTOR: 1, POSE_LANDMARKS: int(found_pose)},
    }
    rows = []
    for flt in (face_count, hands, pose):
        spent = median_ms(lambda flt=flt: flt.score(scored), repeats)
        raw = sum(models.invoke_ms(name, repeats) * n for name, n in runs[flt.name].items() if n)
        rows.append((flt.name, spent, raw))
    return rows


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter = width * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def hands_photos() -> dict[str, np.ndarray]:
    """t1.jpg, seven copies of it turned, scaled or mirrored, and five demo photos."""
    from PIL import Image

    t1, none = t1_photo(), np.zeros((0, 2))
    found = {"t1": t1, "t1_mirrored": np.ascontiguousarray(t1[:, ::-1])}
    found |= {f"t1_rot{deg}": rotated(t1, none, deg)[0] for deg in (15, -15, 30, 90)}
    found |= {f"t1_x{factor}": scaled(t1, none, factor)[0] for factor in (0.5, 0.75)}
    for name in ("astronaut", "astronaut_crop", "grace_hopper", "coffee", "rocket"):
        with Image.open(io.BytesIO(photo_bytes(name))) as photo:
            found[name] = np.asarray(photo.convert("RGB"))
    return found


def hands_lite() -> None:
    """Hands found by the lite and the full MediaPipe models, and how many agree."""
    full = MediaPipeHandsConfig(model_complexity=1).build()
    lite = MediaPipeHandsConfig(model_complexity=0).build()
    totals = np.zeros(3, dtype=int)
    print(f"{'image':14s} {'full':>4s} {'lite':>4s} {'lite among full':>15s}")
    for name, image in hands_photos().items():
        copy = detection_copy(image, DETECT_MAX_SIDE)
        by_full: list[Hand] = copy.to_full(full.detect(copy.rgb))
        by_lite: list[Hand] = copy.to_full(lite.detect(copy.rgb))
        agree = sum(any(box_iou(a.box, b.box) >= 0.5 for a in by_full) for b in by_lite)
        totals += (len(by_full), len(by_lite), agree)
        print(f"{name:14s} {len(by_full):4d} {len(by_lite):4d} {agree:15d}")
    print(f"{'all':14s} {totals[0]:4d} {totals[1]:4d} {totals[2]:15d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--hands-lite", action="store_true", help="lite vs full hand models")
    args = parser.parse_args()
    if args.hands_lite:
        hands_lite()
        return
    models = Models()
    print(f"{'image':10s} {'filter':11s} {'filter ms':>9s} {'models ms':>9s} {'ratio':>6s}")
    for name, image in photos(args.image_size).items():
        for flt, spent, raw in compare(image, models, args.repeats):
            print(f"{name:10s} {flt:11s} {spent:9.2f} {raw:9.2f} {spent / raw:6.2f}")


if __name__ == "__main__":
    main()
