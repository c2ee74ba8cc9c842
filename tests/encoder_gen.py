"""Tiny ONNX encoders built in the tests (onnx.helper): a framed waveform through one fixed projection.

``frame_encoder`` cuts the waveform ``(1, n)`` into whole frames of ``FRAME`` samples (the remainder
is dropped), multiplies each by a ``(FRAME, D)`` weight and, unless ``linear``, applies tanh: output
``(1, T, D)`` with ``T = n // FRAME``. ``reference_frames`` computes the same with numpy.
"""

from __future__ import annotations

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

FRAME = 320  # 20 ms at 16 kHz, WavLM's frame rate


def weights(n_dims: int = 8, seed: int = 0) -> NDArray[np.float32]:
    return (np.random.default_rng(seed).standard_normal((FRAME, n_dims)) / np.sqrt(FRAME)).astype(np.float32)


def frame_encoder(weight: NDArray[np.float32], *, linear: bool = False, rank: int = 3) -> bytes:
    """The model's bytes: ``waveform`` (1, n) float -> ``frames`` (1, T, D), or (T, D) with ``rank=2``, or rank 4."""
    n_dims = weight.shape[1]
    nodes = [
        helper.make_node("Shape", ["waveform"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["n"], axis=0),
        helper.make_node("Div", ["n", "frame"], ["t"]),
        helper.make_node("Mul", ["t", "frame"], ["kept"]),
        helper.make_node("Slice", ["waveform", "zero", "kept", "one"], ["cropped"]),
        helper.make_node("Reshape", ["cropped", "framed_shape"], ["framed"]),
        helper.make_node("MatMul", ["framed", "weight"], ["projected"]),
        helper.make_node("Identity" if linear else "Tanh", ["projected"], ["activated"]),
        helper.make_node("Reshape", ["activated", "out_shape"], ["frames"]),
    ]
    out_shape = {2: [-1, n_dims], 3: [1, -1, n_dims], 4: [1, 1, -1, n_dims]}[rank]
    initializers = [
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([FRAME], np.int64), "frame"),
        numpy_helper.from_array(np.array([1, -1, FRAME], np.int64), "framed_shape"),
        numpy_helper.from_array(np.array(out_shape, np.int64), "out_shape"),
        numpy_helper.from_array(weight, "weight"),
    ]
    graph = helper.make_graph(
        nodes,
        "frame-encoder",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [1, "n_samples"])],
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, [d if d > 0 else "T" for d in out_shape])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def reference_frames(waveform: NDArray[np.float32], weight: NDArray[np.float32], *, linear: bool = False) -> NDArray:
    n_frames = waveform.size // FRAME
    frames = waveform[: n_frames * FRAME].reshape(n_frames, FRAME).astype(np.float64) @ weight.astype(np.float64)
    return frames if linear else np.tanh(frames)


def passthrough(*, inputs: list[tuple[str, int, list]]) -> bytes:
    """A model whose output is its first input (Identity), with the inputs given as ``(name, dtype, shape)``."""
    graph = helper.make_graph(
        [helper.make_node("Identity", [inputs[0][0]], ["out"])],
        "passthrough",
        [helper.make_tensor_value_info(name, dtype, shape) for name, dtype, shape in inputs],
        [helper.make_tensor_value_info("out", inputs[0][1], inputs[0][2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()
