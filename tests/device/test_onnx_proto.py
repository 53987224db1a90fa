"""ONNX codec: round trips, attribute types, files that cv2.dnn runs and onnx.checker accepts."""
from __future__ import annotations

import numpy as np
import pytest
from devicekit import tiny_graph

from vessel_seg.device.onnx_proto import (
    Graph,
    Node,
    OnnxError,
    ValueInfo,
    decode_model,
    encode_model,
    load_model,
    save_model,
)


def test_round_trip_keeps_nodes_attributes_initializers_and_io():
    g = tiny_graph(size=32, channels=3, seed=1)
    back = decode_model(encode_model(g))
    assert back.name == g.name and back.opset == 11 and back.producer == "vessel-seg"
    assert [(n.op_type, n.inputs, n.outputs) for n in back.nodes] == [(n.op_type, n.inputs, n.outputs) for n in g.nodes]
    assert back.nodes[0].attrs == {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    assert back.inputs == [ValueInfo("image", [1, 3, 32, 32], 1)]
    assert back.outputs == [ValueInfo("probability", [1, 1, 32, 32], 1)]
    assert set(back.initializers) == set(g.initializers)
    for name, arr in g.initializers.items():
        assert back.initializers[name].dtype == np.float32
        assert np.array_equal(back.initializers[name], arr)


def test_attribute_python_types_map_to_onnx_types_and_back():
    attrs = {"i": 7, "neg": -3, "f": 0.25, "s": "nearest", "b": b"raw", "nb": b"\xff\xfe", "ints": [1, -2, 3],
             "floats": [0.5, 1.5], "empty": []}
    g = Graph("a", [Node("Identity", ["x"], ["y"], name="n1", attrs=attrs)], {}, [ValueInfo("x", [1])],
              [ValueInfo("y", [1])])
    back = decode_model(encode_model(g)).nodes[0]
    assert back.name == "n1"
    assert back.attrs["i"] == 7 and isinstance(back.attrs["i"], int)
    assert back.attrs["neg"] == -3
    assert back.attrs["f"] == 0.25 and isinstance(back.attrs["f"], float)
    assert back.attrs["s"] == "nearest"
    assert back.attrs["b"] == "raw"  # STRING: decoded to str when it is UTF-8
    assert back.attrs["nb"] == b"\xff\xfe"  # ... and kept as bytes otherwise
    assert back.attrs["ints"] == [1, -2, 3]
    assert back.attrs["floats"] == [0.5, 1.5]
    assert back.attrs["empty"] == []


def test_non_float_initializers_and_tensor_attributes_round_trip():
    init = {"shape": np.array([1, -1], dtype=np.int64), "half": np.array([1.5, -2.0], dtype=np.float16)}
    node = Node("Constant", [], ["c"], attrs={"value": np.arange(6, dtype=np.float32).reshape(2, 3)})
    g = Graph("t", [node], init, [ValueInfo("x", [1])], [ValueInfo("c", [2, 3])])
    back = decode_model(encode_model(g))
    assert back.initializers["shape"].dtype == np.int64 and back.initializers["shape"].tolist() == [1, -1]
    assert back.initializers["half"].dtype == np.float16 and back.initializers["half"].tolist() == [1.5, -2.0]
    assert np.array_equal(back.nodes[0].attrs["value"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_unsupported_attribute_values_are_rejected_with_the_name():
    g = Graph("t", [Node("Identity", ["x"], ["y"], attrs={"bad": {"a": 1}})], {}, [ValueInfo("x", [1])],
              [ValueInfo("y", [1])])
    with pytest.raises(OnnxError, match="bad"):
        encode_model(g)


@pytest.mark.parametrize("data", [b"", b"\x08", b"not an onnx model at all", b"\x3a\xff\xff\xff\xff\x0f"])
def test_garbage_is_rejected_with_onnx_error(data):
    with pytest.raises(OnnxError):
        decode_model(data)


def test_cv2_dnn_loads_and_runs_the_encoded_file(tmp_path):
    import cv2
    g = tiny_graph(size=32, channels=4, seed=2)
    path = str(tmp_path / "m.onnx")
    save_model(g, path)
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    net = cv2.dnn.readNetFromONNX(path)
    net.setInput(x)
    y = net.forward()
    # independent numpy computation of the same tiny network
    w1, b1, w2, b2 = (g.initializers[k] for k in ("w1", "b1", "w2", "b2"))
    xp = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    c1 = np.zeros((4, 32, 32), dtype=np.float64)
    for ky in range(3):
        for kx in range(3):
            c1 += np.einsum("oc,chw->ohw", w1[:, :, ky, kx], xp[:, ky:ky + 32, kx:kx + 32])
    r1 = np.maximum(c1 + b1[:, None, None], 0)
    c2 = np.einsum("oc,chw->ohw", w2[:, :, 0, 0], r1) + b2[:, None, None]
    expected = 1 / (1 + np.exp(-c2))
    assert y.shape == (1, 1, 32, 32)
    assert np.abs(y[0] - expected).max() < 1e-5
    assert load_model(path).nodes[1].op_type == "Relu"


def test_onnx_checker_accepts_the_encoded_model(tmp_path):
    onnx = pytest.importorskip("onnx")
    path = str(tmp_path / "m.onnx")
    save_model(tiny_graph(), path)
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 6 and model.opset_import[0].version == 11
