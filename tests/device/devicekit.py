"""Helpers shared by the device tests: tiny graphs/bundles, inputs, FP32 reference outputs."""
from __future__ import annotations

from typing import Optional

import numpy as np

from vessel_seg.device.aipp import aipp_nv12_to_nchw
from vessel_seg.device.bundle import ModelBundle
from vessel_seg.device.onnx_proto import Graph, Node, ValueInfo

SIZE = 64


def tiny_graph(size: int = SIZE, channels: int = 4, seed: int = 0) -> Graph:
    """conv3x3(3->channels) + ReLU + conv1x1(channels->1) + Sigmoid, NCHW 1x3xSxS -> 1x1xSxS."""
    rng = np.random.default_rng(seed)
    init = {
        "w1": (rng.normal(size=(channels, 3, 3, 3)) * 0.5).astype(np.float32),
        "b1": (rng.normal(size=channels) * 0.1).astype(np.float32),
        "w2": (rng.normal(size=(1, channels, 1, 1)) * 0.5).astype(np.float32),
        "b2": np.array([0.05], dtype=np.float32),
    }
    nodes = [
        Node("Conv", ["image", "w1", "b1"], ["c1"], attrs={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
        Node("Relu", ["c1"], ["r1"]),
        Node("Conv", ["r1", "w2", "b2"], ["c2"], attrs={"kernel_shape": [1, 1]}),
        Node("Sigmoid", ["c2"], ["probability"]),
    ]
    return Graph("tiny", nodes, init, [ValueInfo("image", [1, 3, size, size])],
                 [ValueInfo("probability", [1, 1, size, size])])


def bundle_meta(**extra) -> dict:
    meta = {"name": "tiny", "version": "0.0.1", "description": "test bundle", "threshold": 0.5,
            "parameters": 125, "macs_512": 0, "preprocess": {"size": SIZE}}
    meta.update(extra)
    return meta


def random_input(bundle: ModelBundle, seed: int = 0) -> np.ndarray:
    """A valid host input for ``bundle`` (NV12 uint8 or float32 NCHW in [0, 1])."""
    rng = np.random.default_rng(seed)
    if bundle.host_input_dtype == np.uint8:
        return rng.integers(0, 256, size=bundle.host_input_shape, dtype=np.uint8)
    return rng.random(bundle.host_input_shape, dtype=np.float32)


def reference_output(bundle: ModelBundle, host_input: np.ndarray) -> np.ndarray:
    """FP32 reference: AIPP model (if any) + cv2.dnn on the bundle's ONNX."""
    import cv2
    x = aipp_nv12_to_nchw(host_input, bundle.aipp, "fp32") if bundle.aipp is not None else host_input
    net = cv2.dnn.readNetFromONNX(bundle.onnx_path)
    net.setInput(np.ascontiguousarray(x, dtype=np.float32))
    return np.asarray(net.forward(), dtype=np.float32).reshape(bundle.output_shape)


def tolerance(runtime: str) -> float:
    """Max abs difference to the FP32 reference: tight on the FP32 simulator, FP16-sized on the NPU."""
    return 1e-5 if runtime == "sim" else 2e-2


def leak_report(runtime: str) -> Optional[list]:
    """The simulator's leak report (None on the real runtime, which has no such API)."""
    if runtime != "sim":
        return None
    from vessel_seg.device.sim import control
    return control.leak_report()
