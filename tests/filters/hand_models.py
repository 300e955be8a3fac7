"""A tiny whole-body keypoint ONNX model with the ``onnx`` hand backend's signature.

Input ``image`` ``[1, 3, S, S]``; output ``keypoints`` ``[1, PEOPLE, 133, 3]`` =
``0 * mean(image) + KEYPOINTS``: random but fixed keypoints (seeded), so what the backend
returns is known exactly from ``KEYPOINTS`` and the letterbox scale (plumbing, not semantics).
Scores are set per hand: person 0's left hand 0.9 and right 0.1, person 1's left 0.2 and
right 0.8, so at the default threshold 0.3 exactly those two hands are found.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save

SIZE = 64
PEOPLE = 2
POINTS = 133  # COCO-WholeBody
LEFT, RIGHT = 91, 112  # first keypoint of each hand
HAND_SCORES = ((0.9, 0.1), (0.2, 0.8))  # (left, right) per person
OPSET = 13


def keypoints() -> np.ndarray:
    """The model's constant output, ``[1, PEOPLE, POINTS, 3]`` float32."""
    rng = np.random.default_rng(12)
    out = np.zeros((1, PEOPLE, POINTS, 3), dtype=np.float32)
    out[..., :2] = rng.uniform(0, SIZE, size=(1, PEOPLE, POINTS, 2))
    out[..., 2] = rng.uniform(0, 0.05, size=(1, PEOPLE, POINTS))
    for person, (left, right) in enumerate(HAND_SCORES):
        out[0, person, LEFT : LEFT + 21, 2] = left
        out[0, person, RIGHT : RIGHT + 21, 2] = right
    return out


def write_model(path: Path) -> Path:
    """Save the model at ``path`` and return it."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, SIZE, SIZE])
    output = helper.make_tensor_value_info("keypoints", TensorProto.FLOAT, [1, PEOPLE, POINTS, 3])
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=1),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "points"], ["keypoints"]),
    ]
    constants = [
        numpy_helper.from_array(np.zeros((), dtype=np.float32), "zero"),
        numpy_helper.from_array(keypoints(), "points"),
    ]
    graph = helper.make_graph(nodes, "tiny-wholebody", [image], [output], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # ONNX Runtime reads IR 8 since 1.14
    save(model, str(path))
    return path
