"""Model bundles: write_bundle output, load_bundle validation with messages saying what is wrong."""
from __future__ import annotations

import os

import numpy as np
import pytest
import yaml
from devicekit import SIZE, bundle_meta, tiny_graph

from vessel_seg.device.aipp import default_aipp_cfg_text
from vessel_seg.device.bundle import BundleError, load_bundle, sha256_file, write_bundle
from vessel_seg.device.onnx_proto import encode_model


def _write(tmp_path, aipp=True, name="b", **meta):
    cfg = default_aipp_cfg_text(SIZE, SIZE) if aipp else None
    return write_bundle(str(tmp_path / name), tiny_graph(), bundle_meta(**meta), cfg)


def _edit_yaml(bundle, change):
    path = os.path.join(bundle.path, "model.yaml")
    with open(path) as fh:
        meta = yaml.safe_load(fh)
    change(meta)
    with open(path, "w") as fh:
        yaml.safe_dump(meta, fh)


def _rehash(bundle, name):
    _edit_yaml(bundle, lambda m: m["files"].__setitem__(name, sha256_file(os.path.join(bundle.path, name))))


def test_written_aipp_bundle_loads_with_nv12_host_input(tmp_path):
    b = _write(tmp_path)
    assert sorted(os.listdir(b.path)) == ["aipp.cfg", "convert_om.sh", "model.onnx", "model.yaml"]
    assert b.name == "tiny" and b.version == "0.0.1" and b.threshold == 0.5
    assert b.input_shape == (1, 3, SIZE, SIZE) and b.output_shape == (1, 1, SIZE, SIZE)
    assert b.input_format == "NV12" and b.aipp is not None and b.aipp.src_w == SIZE
    assert b.host_input_shape == (SIZE * 3 // 2, SIZE) and b.host_input_dtype == np.uint8
    assert b.onnx_path.endswith("model.onnx") and b.om_path.endswith("model.om") and not b.has_om
    assert b.preprocess == {"size": SIZE} and b.meta["parameters"] == 125
    assert b.meta["files"]["model.onnx"] == sha256_file(b.onnx_path)


def test_written_float_bundle_has_no_aipp_and_float_nchw_input(tmp_path):
    b = _write(tmp_path, aipp=False)
    assert b.aipp is None and b.input_format == "NCHW_FLOAT32" and b.meta["aipp"] is False
    assert b.host_input_shape == (1, 3, SIZE, SIZE) and b.host_input_dtype == np.float32
    assert not os.path.exists(os.path.join(b.path, "aipp.cfg"))


def test_real_size_bundle_has_768x512_nv12_host_input(tmp_path):
    b = write_bundle(str(tmp_path / "big"), tiny_graph(size=512, channels=1), bundle_meta(),
                     default_aipp_cfg_text(512, 512))
    assert b.host_input_shape == (768, 512) and b.host_input_nbytes == 393216 and b.output_nbytes == 1048576


def test_convert_script_is_the_documented_atc_command(tmp_path):
    b = _write(tmp_path)
    path = os.path.join(b.path, "convert_om.sh")
    text = open(path).read()
    assert os.access(path, os.X_OK) and text.startswith("#!/bin/sh\n#")
    assert ('atc --model=model.onnx --framework=5 --output=model --soc_version=Ascend310 '
            '--input_shape="image:1,3,64,64" --input_format=NCHW --insert_op_conf=aipp.cfg '
            '--output_type=FP32 --log=error') in text
    assert "CANN" in text
    assert "--insert_op_conf" not in open(os.path.join(_write(tmp_path, aipp=False, name="f").path,
                                                       "convert_om.sh")).read()


def test_write_bundle_accepts_onnx_bytes(tmp_path):
    b = write_bundle(str(tmp_path / "x"), encode_model(tiny_graph()), bundle_meta(), None)
    assert b.input_name == "image" and b.output_name == "probability"


def test_write_bundle_refuses_a_format_that_contradicts_aipp(tmp_path):
    with pytest.raises(BundleError, match="contradicts"):
        write_bundle(str(tmp_path / "x"), tiny_graph(), bundle_meta(input={"format": "NCHW_FLOAT32"}),
                     default_aipp_cfg_text(SIZE, SIZE))


def test_missing_folder_yaml_or_onnx_is_named(tmp_path):
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="model.yaml is missing"):
        load_bundle(str(tmp_path / "empty"))
    b = _write(tmp_path)
    os.remove(b.onnx_path)
    with pytest.raises(BundleError, match="model.onnx is missing"):
        load_bundle(b.path)


def test_tampered_file_fails_the_hash_check(tmp_path):
    b = _write(tmp_path)
    with open(b.onnx_path, "ab") as fh:
        fh.write(b"\x00")
    with pytest.raises(BundleError, match="model.onnx: sha256 mismatch"):
        load_bundle(b.path)


def test_aipp_flag_must_match_the_aipp_cfg_file(tmp_path):
    b = _write(tmp_path)
    os.remove(os.path.join(b.path, "aipp.cfg"))
    with pytest.raises(BundleError, match="aipp: true but aipp.cfg is missing"):
        load_bundle(b.path)
    f = _write(tmp_path, aipp=False, name="f")
    with open(os.path.join(f.path, "aipp.cfg"), "w") as fh:
        fh.write(default_aipp_cfg_text(SIZE, SIZE))
    with pytest.raises(BundleError, match="aipp.cfg is present but model.yaml says aipp: false"):
        load_bundle(f.path)


def test_input_format_must_be_nv12_exactly_when_aipp(tmp_path):
    b = _write(tmp_path)
    _edit_yaml(b, lambda m: m["input"].__setitem__("format", "NCHW_FLOAT32"))
    with pytest.raises(BundleError, match="NV12 exactly when aipp"):
        load_bundle(b.path)


def test_aipp_source_size_must_equal_the_network_size(tmp_path):
    b = _write(tmp_path)
    with open(os.path.join(b.path, "aipp.cfg"), "w") as fh:
        fh.write(default_aipp_cfg_text(SIZE * 2, SIZE))
    _rehash(b, "aipp.cfg")
    with pytest.raises(BundleError, match="aipp.cfg source size 128x64"):
        load_bundle(b.path)


def test_invalid_aipp_cfg_is_reported(tmp_path):
    b = _write(tmp_path)
    with open(os.path.join(b.path, "aipp.cfg"), "w") as fh:
        fh.write("aipp_op { input_format: RGB888_U8 }")
    _rehash(b, "aipp.cfg")
    with pytest.raises(BundleError, match="RGB888_U8"):
        load_bundle(b.path)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("name"), "missing key 'name'"),
    (lambda m: m.__setitem__("version", 1), "'version' must be str"),
    (lambda m: m.__setitem__("threshold", 1.5), "threshold must be in"),
    (lambda m: m.__setitem__("aipp", "yes"), "'aipp' must be bool"),
    (lambda m: m["input"].__setitem__("shape", [1, 3, 64]), "input.shape' must be 4 positive"),
    (lambda m: m["output"].__setitem__("dtype", "float16"), "output.dtype must be float32"),
    (lambda m: m["input"].__setitem__("name", "data"), "named 'image' but model.yaml input.name is 'data'"),
    (lambda m: m["output"].__setitem__("shape", [1, 1, 32, 32]), "output shape"),
    (lambda m: m.pop("files"), "missing key 'files'"),
    (lambda m: m["files"].pop("aipp.cfg"), "no sha256 for aipp.cfg"),
    (lambda m: m["files"].__setitem__("extra.bin", "0" * 64), "lists extra.bin but the file is missing"),
    (lambda m: m.__setitem__("parameters", -1), "'parameters' must be a non-negative integer"),
    (lambda m: m.pop("preprocess"), "missing key 'preprocess'"),
])
def test_inconsistent_model_yaml_is_rejected_with_what_is_wrong(tmp_path, change, message):
    b = _write(tmp_path)
    _edit_yaml(b, change)
    with pytest.raises(BundleError, match=message):
        load_bundle(b.path)


def test_model_om_listed_in_files_is_optional_until_built(tmp_path):
    b = _write(tmp_path)
    _edit_yaml(b, lambda m: m["files"].__setitem__("model.om", "a" * 64))
    assert load_bundle(b.path).name == "tiny"
    with open(b.om_path, "wb") as fh:
        fh.write(b"om")
    with pytest.raises(BundleError, match="model.om: sha256 mismatch"):
        load_bundle(b.path)
