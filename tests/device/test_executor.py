"""The numpy ONNX executor: FP32 agrees with cv2.dnn, FP16 emulates the NPU's per-layer rounding."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
from devicekit import tiny_graph

from vessel_seg.device.onnx_proto import Graph, Node, ValueInfo, encode_model
from vessel_seg.device.sim.executor import OnnxExecutor, UnsupportedOpError, _fp16

S = 32
C = 4


def all_ops_graph(seed: int = 0) -> Graph:
    """Every supported op at least once (Conv, BN, LeakyRelu, MaxPool, Relu, AveragePool, Resize,
    ConvTranspose, Identity, Add, Mul, Concat, Sigmoid)."""
    rng = np.random.default_rng(seed)

    def r(*shape):
        return (rng.normal(size=shape) * 0.4).astype(np.float32)
    init = {"w1": r(C, 3, 3, 3), "b1": r(C), "g": np.abs(r(C)) + 0.5, "be": r(C), "m": r(C),
            "v": np.abs(r(C)) + 0.5, "w2": r(C, C, 3, 3), "b2": r(C), "wt": r(C, C, 2, 2), "bt": r(C),
            "sc": np.array([1, 1, 2, 2], np.float32), "roi": np.zeros(0, np.float32), "k": r(1, C, 1, 1),
            "w3": r(1, 2 * C, 1, 1), "b3": r(1)}
    nearest = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    nodes = [
        Node("Conv", ["image", "w1", "b1"], ["c1"], attrs={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
        Node("BatchNormalization", ["c1", "g", "be", "m", "v"], ["bn"], attrs={"epsilon": 1e-5}),
        Node("LeakyRelu", ["bn"], ["lr"], attrs={"alpha": 0.2}),
        Node("MaxPool", ["lr"], ["mp"], attrs={"kernel_shape": [2, 2], "strides": [2, 2]}),
        Node("Conv", ["mp", "w2", "b2"], ["c2"], attrs={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
        Node("Relu", ["c2"], ["r2"]),
        Node("AveragePool", ["r2"], ["ap"], attrs={"kernel_shape": [2, 2], "strides": [2, 2]}),
        Node("Resize", ["ap", "roi", "sc"], ["rs"], attrs=nearest),
        Node("ConvTranspose", ["r2", "wt", "bt"], ["up"], attrs={"kernel_shape": [2, 2], "strides": [2, 2]}),
        Node("Identity", ["up"], ["id"]),
        Node("Resize", ["rs", "roi", "sc"], ["rs2"], attrs=nearest),
        Node("Add", ["id", "rs2"], ["ad"]),
        Node("Mul", ["ad", "k"], ["mu"]),
        Node("Concat", ["mu", "lr"], ["cat"], attrs={"axis": 1}),
        Node("Conv", ["cat", "w3", "b3"], ["c3"], attrs={"kernel_shape": [1, 1]}),
        Node("Sigmoid", ["c3"], ["probability"]),
    ]
    return Graph("all", nodes, init, [ValueInfo("image", [1, 3, S, S])], [ValueInfo("probability", [1, 1, S, S])])


def cv2_run(graph: Graph, x: np.ndarray) -> np.ndarray:
    import cv2
    net = cv2.dnn.readNetFromONNX(np.frombuffer(encode_model(graph), np.uint8))
    net.setInput(x)
    return net.forward()


def test_fp32_matches_cv2_dnn_on_every_supported_op():
    g = all_ops_graph()
    x = np.random.default_rng(1).random((1, 3, S, S), dtype=np.float32)
    ref = cv2_run(g, x)
    y = OnnxExecutor(g, "fp32").run(x)
    assert y.shape == (1, 1, S, S) and y.dtype == np.float32
    assert ref.std() > 0.01  # a non-trivial output
    assert np.abs(y - ref).max() <= 1e-5


def test_strided_convolution_matches_cv2_dnn():
    rng = np.random.default_rng(2)
    g = Graph("s", [Node("Conv", ["x", "w", "b"], ["y"], attrs={"kernel_shape": [3, 3], "pads": [1, 0, 2, 1],
                                                                "strides": [2, 2]})],
              {"w": rng.normal(size=(5, 3, 3, 3)).astype(np.float32), "b": rng.normal(size=5).astype(np.float32)},
              [ValueInfo("x", [1, 3, 17, 20])], [ValueInfo("y", [1, 5, 9, 10])])
    x = rng.random((1, 3, 17, 20), dtype=np.float32)
    assert np.abs(OnnxExecutor(g).run(x) - cv2_run(g, x)).max() <= 1e-5


def test_upsample_nearest_replicates_pixels():
    g = Graph("u", [Node("Upsample", ["x", "s"], ["y"], attrs={"mode": "nearest"})],
              {"s": np.array([1, 1, 2, 3], np.float32)}, [ValueInfo("x", [1, 1, 2, 2])], [ValueInfo("y", [1, 1, 4, 6])],
              opset=9)
    x = np.array([[[[1, 2], [3, 4]]]], np.float32)
    y = OnnxExecutor(g).run(x)
    assert y[0, 0].tolist() == [[1, 1, 1, 2, 2, 2]] * 2 + [[3, 3, 3, 4, 4, 4]] * 2


def test_fp16_mode_rounds_weights_inputs_and_every_layer_output():
    g = all_ops_graph()
    x = np.random.default_rng(3).random((1, 3, S, S), dtype=np.float32)
    ex16 = OnnxExecutor(g, "fp16")
    y16 = ex16.run(x)
    y32 = OnnxExecutor(g, "fp32").run(x)
    assert np.array_equal(y16, y16.astype(np.float16).astype(np.float32))
    w = ex16._consts["w1"]
    assert np.array_equal(w, w.astype(np.float16).astype(np.float32)) and not np.array_equal(w, g.initializers["w1"])
    diff = np.abs(y16 - y32).max()
    assert 0 < diff < 5e-3


def test_fp16_mode_equals_a_layer_by_layer_fp16_reference():
    """conv (fp16 operands, fp32 accumulation) -> round -> relu -> conv -> round -> sigmoid -> round."""
    g = tiny_graph(size=16, channels=3, seed=4)
    x = np.random.default_rng(4).random((1, 3, 16, 16), dtype=np.float32)

    def h(a):
        return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)
    w1, b1, w2, b2 = (h(g.initializers[k]) for k in ("w1", "b1", "w2", "b2"))
    xp = np.pad(h(x)[0], ((0, 0), (1, 1), (1, 1)))
    c1 = np.zeros((3, 16, 16), np.float32)
    for ky in range(3):
        for kx in range(3):
            c1 += np.einsum("oc,chw->ohw", w1[:, :, ky, kx], xp[:, ky:ky + 16, kx:kx + 16])
    r1 = np.maximum(h(c1 + b1[:, None, None]), 0)
    c2 = h(np.einsum("oc,chw->ohw", w2[:, :, 0, 0], r1) + b2[:, None, None])
    expected = h(1 / (1 + np.exp(-c2)))
    y = OnnxExecutor(g, "fp16").run(x)[0]
    assert np.abs(y - expected).max() <= 2 ** -11  # at most one fp16 ulp below 1.0 (accumulation order)


def test_fast_fp16_rounding_is_bit_exact_with_numpy_float16():
    rng = np.random.default_rng(5)
    x = (rng.normal(size=200000) * np.exp(rng.uniform(-28, 13, 200000))).astype(np.float32)
    x[:6] = [0.0, -0.0, np.inf, -np.inf, 65519.0, 65520.0]
    x[6:10] = [5.96e-8, 2.98e-8, 6.1e-5, 1e-45]
    with np.errstate(over="ignore"):
        expected = x.astype(np.float16).astype(np.float32)
    assert np.array_equal(_fp16(x), expected)
    nan = _fp16(np.array([np.nan], np.float32))
    assert np.isnan(nan[0])


def test_unsupported_ops_and_configurations_are_named():
    g = Graph("bad", [Node("Softmax", ["x"], ["y"]), Node("Tanh", ["y"], ["z"])], {}, [ValueInfo("x", [1, 1, 2, 2])],
              [ValueInfo("z", [1, 1, 2, 2])])
    with pytest.raises(UnsupportedOpError, match="Softmax, Tanh"):
        OnnxExecutor(g)
    grouped = Graph("g", [Node("Conv", ["x", "w"], ["y"], name="conv7", attrs={"kernel_shape": [1, 1], "group": 2})],
                    {"w": np.ones((2, 1, 1, 1), np.float32)}, [ValueInfo("x", [1, 2, 2, 2])],
                    [ValueInfo("y", [1, 2, 2, 2])])
    with pytest.raises(UnsupportedOpError, match="conv7.*group"):
        OnnxExecutor(grouped).run(np.ones((1, 2, 2, 2), np.float32))


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("VESSEL_SEG_PERF") != "1",
                    reason="timing test: set VESSEL_SEG_PERF=1 on an idle machine")
def test_a_2_gmac_unet_runs_in_fp16_well_under_two_seconds():
    rng = np.random.default_rng(6)
    nodes, init, x_name, cin, skips, hw, macs = [], {}, "image", 3, [], 512, 0

    def conv(x, ci, co, size, k=3, relu=True):
        nonlocal macs
        n = len(nodes)
        init["w%d" % n] = (rng.normal(size=(co, ci, k, k)) * np.sqrt(2.0 / (ci * k * k))).astype(np.float32)
        init["b%d" % n] = np.zeros(co, np.float32)
        nodes.append(Node("Conv", [x, "w%d" % n, "b%d" % n], ["c%d" % n],
                          attrs={"kernel_shape": [k, k], "pads": [k // 2] * 4}))
        macs += size * size * ci * co * k * k
        if not relu:
            return "c%d" % n
        nodes.append(Node("Relu", ["c%d" % n], ["r%d" % n]))
        return "r%d" % n
    for i, c in enumerate((8, 16, 32, 40)):
        if i:
            nodes.append(Node("MaxPool", [x_name], ["p%d" % i], attrs={"kernel_shape": [2, 2], "strides": [2, 2]}))
            x_name, hw = "p%d" % i, hw // 2
        x_name = conv(conv(x_name, cin, c, hw), c, c, hw)
        skips.append((x_name, c))
        cin = c
    for j, (skip, cs) in enumerate(reversed(skips[:-1])):
        init["wt%d" % j] = (rng.normal(size=(cin, cs, 2, 2)) * 0.3).astype(np.float32)
        nodes.append(Node("ConvTranspose", [x_name, "wt%d" % j], ["u%d" % j],
                          attrs={"kernel_shape": [2, 2], "strides": [2, 2]}))
        hw *= 2
        macs += hw * hw * cin * cs
        nodes.append(Node("Concat", ["u%d" % j, skip], ["cat%d" % j], attrs={"axis": 1}))
        x_name = conv(conv("cat%d" % j, 2 * cs, cs, hw), cs, cs, hw)
        cin = cs
    nodes.append(Node("Sigmoid", [conv(x_name, cin, 1, hw, k=1, relu=False)], ["probability"]))
    g = Graph("unet", nodes, init, [ValueInfo("image", [1, 3, 512, 512])], [ValueInfo("probability", [1, 1, 512, 512])])
    assert 1.8e9 < macs < 2.6e9
    ex = OnnxExecutor(g, "fp16")
    x = rng.random((1, 3, 512, 512), dtype=np.float32)
    ex.run(x)
    t0 = time.perf_counter()
    ex.run(x)
    assert time.perf_counter() - t0 < 2.0
