"""Tiny ONNX models with the signatures of an InsightFace pack's detector, landmark and
age/gender models, saved in a pack's layout.

insightface recognizes a pack's models by their signatures, not their names
(``insightface/model_zoo/model_zoo.py``, ``ModelRouter.get_model``): a model with 5 or more
outputs is an SCRFD detector, one with a 192 x 192 input and 3309 outputs ``landmark_3d_68``
(head pose), one with a 96 x 96 input and 3 outputs ``genderage``. The last two here output
constants (``landmark_3d_68_model``, ``genderage_model``).
The detector here has SCRFD's 9-output layout (``model_zoo/scrfd.py``, ``SCRFD._init_vars``):
scores, then box distances, then keypoint distances, each for strides 8, 16 and 32, with two
anchors per cell, on a ``1 x 3 x ? x ?`` input normalized as ``(pixel - 127.5) / 128``.

Its weights make the result known exactly, so tests assert plumbing and not semantics:

- strides 8 and 16 have random score weights and a bias that keeps every score below
  ``sigmoid(-12)``, so they never fire;
- at stride 32, anchor 0 of a cell scores ``sigmoid(8 * (r - (g + b) / 2 - 1.5))`` from the
  cell's mean normalized red, green and blue: a cell of pure red ``(255, 0, 0)`` scores
  ``sigmoid(3.9375)``, red 208 ``sigmoid(1)``, red 176 ``sigmoid(-1)``, and natural colours
  (and blue) stay far below 0.5. Its box is the cell itself and its keypoints sit at fixed
  points inside the cell (``KEYPOINTS``);
- anchor 1 scores one logit lower with a box 1.25 cells wide, so NMS (IoU 0.65 > 0.4) keeps
  exactly one face per red cell: anchor 0's.

A detection cell is 32 pixels of the detector's input, i.e. ``32 / det_scale`` image pixels.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STRIDES = (8, 16, 32)
ANCHORS = 2  # SCRFD's _num_anchors with 9 outputs
FIRING_STRIDE = 32
# Per anchor, per input channel (RGB: insightface's blobFromImage(swapRB=True) undoes BGR).
RED_WEIGHTS = (8.0, -4.0, -4.0)
ANCHOR_BIASES = (-12.0, -13.0)
# Box distances (left, top, right, bottom) from the anchor point, in strides. SCRFD's anchor
# point of a cell is its top-left corner, so (0, 0, 1, 1) is the cell itself.
ANCHOR_BOXES = ((0.0, 0.0, 1.0, 1.0), (0.0, 0.0, 1.25, 1.25))
# Five keypoints (x, y) in strides from the anchor point, in LANDMARK_NAMES order.
KEYPOINTS = ((0.25, 0.375), (0.75, 0.375), (0.5, 0.5), (0.375, 0.75), (0.625, 0.75))
# The most a normalized pixel can be: (255 - 127.5) / 128.
MAX_INPUT = 127.5 / 128
NEVER_FIRE_MARGIN = 12.0
OPSET = 13


def red_logit(rgb: tuple[int, int, int]) -> float:
    """Anchor 0's score logit for a stride-32 cell filled with ``rgb``."""
    normalized = [(v - 127.5) / 128 for v in rgb]
    return sum(w * v for w, v in zip(RED_WEIGHTS, normalized, strict=True)) + ANCHOR_BIASES[0]


def sigmoid(logit: float) -> float:
    return 1.0 / (1.0 + math.exp(-logit))


def _score_head(stride: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Conv weights (anchors x 3 x 1 x 1) and biases of one stride's score head."""
    if stride == FIRING_STRIDE:
        weights = np.array([RED_WEIGHTS] * ANCHORS, dtype=np.float32)
        return weights.reshape(ANCHORS, 3, 1, 1), np.array(ANCHOR_BIASES, dtype=np.float32)
    weights = rng.normal(0.0, 0.5, size=(ANCHORS, 3, 1, 1)).astype(np.float32)
    # |w . x| <= sum|w| * MAX_INPUT, so the logit stays below -NEVER_FIRE_MARGIN.
    bound = np.abs(weights).sum(axis=(1, 2, 3)) * MAX_INPUT
    return weights, (-bound - NEVER_FIRE_MARGIN).astype(np.float32)


def _constant_head(per_anchor: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Zero weights and a per-anchor constant bias: outputs that ignore the image."""
    bias = np.array([v for anchor in per_anchor for v in anchor], dtype=np.float32)
    return np.zeros((bias.size, 3, 1, 1), dtype=np.float32), bias


def _head(
    graph: list[onnx.NodeProto],
    inits: list[onnx.TensorProto],
    name: str,
    pooled: str,
    params: tuple[np.ndarray, np.ndarray],
    width: int,
    sigmoid_out: bool,
) -> None:
    """1x1 conv, then NCHW -> (cells * anchors) x width, SCRFD's export layout."""
    weights, bias = params
    inits += [
        numpy_helper.from_array(weights, f"{name}_w"),
        numpy_helper.from_array(bias, f"{name}_b"),
    ]
    inits.append(numpy_helper.from_array(np.array([-1, width], dtype=np.int64), f"{name}_shape"))
    conv = f"{name}_conv"
    graph.append(helper.make_node("Conv", [pooled, f"{name}_w", f"{name}_b"], [conv]))
    if sigmoid_out:
        graph.append(helper.make_node("Sigmoid", [conv], [f"{name}_act"]))
        conv = f"{name}_act"
    graph.append(helper.make_node("Transpose", [conv], [f"{name}_nhwc"], perm=[0, 2, 3, 1]))
    graph.append(helper.make_node("Reshape", [f"{name}_nhwc", f"{name}_shape"], [name]))


def scrfd_model(seed: int = 0) -> onnx.ModelProto:
    """The detector described in the module docstring."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    outputs: dict[str, list[onnx.ValueInfoProto]] = {"score": [], "bbox": [], "kps": []}
    for stride in STRIDES:
        pooled = f"pool_{stride}"
        nodes.append(
            helper.make_node(
                "AveragePool",
                ["input.1"],
                [pooled],
                kernel_shape=[stride] * 2,
                strides=[stride] * 2,
            )
        )
        box = [list(b) for b in ANCHOR_BOXES]
        kps = [[c for point in KEYPOINTS for c in point]] * ANCHORS
        heads = {
            "score": (_score_head(stride, rng), 1, True),
            "bbox": (_constant_head(box), 4, False),
            "kps": (_constant_head(kps), 10, False),
        }
        for kind, (params, width, act) in heads.items():
            name = f"{kind}_{stride}"
            _head(nodes, inits, name, pooled, params, width, act)
            outputs[kind].append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"n{stride}", width])
            )
    # Older buffalo packs name both spatial axes "?", as here (insightface model_zoo.py).
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "?", "?"])
    graph = helper.make_graph(
        nodes, "tiny_scrfd", [image], [o for kind in outputs.values() for o in kind], inits
    )
    return _model(graph)


def genderage_model(gender_logits: tuple[float, float], age: float) -> onnx.ModelProto:
    """insightface's ``genderage`` signature (1 x 3 x 96 x 96 in, 1 x 3 out), constant output:
    ``Attribute.get`` takes gender as the argmax of the first two values (1: male), age as 100x
    the third."""
    return _constant_model("tiny_genderage", 96, [*gender_logits, age / 100])


def rotation(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """``Rz(roll) Ry(yaw) Rx(pitch)`` from degrees: the matrix whose angles insightface's
    ``utils.transform.matrix2angle`` returns as (pitch, yaw, roll)."""
    x, y, z = np.radians([pitch, yaw, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return rz @ ry @ rx


def landmark_3d_68_model(pitch: float, yaw: float, roll: float) -> onnx.ModelProto:
    """insightface's ``landmark_3d_68`` signature (1 x 3 x 192 x 192 in, 1 x 3309 out, of which
    ``Landmark.get`` reads the last 68 x 3 in [-1, 1] crop units), constant output: its own mean
    face shape rotated by the given angles. The crop-to-image map is a scaled translation, so
    insightface's pose fit recovers exactly those angles."""
    from insightface.data import get_object

    mean_shape = np.asarray(get_object("meanshape_68.pkl"), dtype=np.float64)  # 68 x 3
    rotated = mean_shape @ rotation(pitch, yaw, roll).T
    values = np.zeros((3309 // 3 - 68, 3))  # the model's other points, unused for 3d_68
    return _constant_model("tiny_1k3d68", 192, np.vstack([values, rotated]).ravel().tolist())


def _constant_model(name: str, side: int, values: list[float]) -> onnx.ModelProto:
    """A ``1 x 3 x side x side`` input, a ``1 x len(values)`` output that is always ``values``."""
    weights, bias = _constant_head([values])
    inits = [
        numpy_helper.from_array(weights, "w"),
        numpy_helper.from_array(bias, "b"),
        numpy_helper.from_array(np.array([1, bias.size], dtype=np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
        helper.make_node("Conv", ["pooled", "w", "b"], ["conv"]),
        helper.make_node("Reshape", ["conv", "shape"], ["fc1"]),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, bias.size])],
        inits,
    )
    return _model(graph)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # ONNX Runtime reads IR 8 since 1.14
    onnx.checker.check_model(model, full_check=True)
    return model


def write_pack(root: Path, pack: str, models: dict[str, onnx.ModelProto]) -> Path:
    """Save ``models`` (file name -> model) at InsightFace's ``<root>/models/<pack>`` layout."""
    pack_dir = root / "models" / pack
    pack_dir.mkdir(parents=True)
    for name, model in models.items():
        onnx.save(model, str(pack_dir / name))
    return pack_dir
