"""Preprocessing: one FOV-normalised, gray, model-sized view of any fundus photograph."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vessel_seg.camera.synthetic import make_fundus
from vessel_seg.pipeline.shared.preprocess import (
    PreprocessParams,
    detect_fov,
    map_mask,
    preprocess,
    restore_to_original,
    rgb_to_nv12,
    square_crop_geometry,
)


def fov_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


def test_detected_fov_matches_the_retina_of_a_synthetic_photograph():
    rgb, _, fov = make_fundus(565, 584, seed=3)
    assert fov_iou(detect_fov(rgb), fov) > 0.97


def test_a_photograph_without_black_surround_uses_the_whole_image():
    rgb = np.full((300, 400, 3), 120, np.uint8)
    assert detect_fov(rgb).all()


def test_output_is_model_sized_gray_and_nv12_of_it_is_lossless():
    rgb, _, _ = make_fundus(565, 584, seed=1)
    pre = preprocess(rgb)
    assert pre.model_rgb.shape == (512, 512, 3) and pre.model_rgb.dtype == np.uint8
    assert (pre.model_rgb[:, :, 0] == pre.model_rgb[:, :, 2]).all()
    nv12 = rgb_to_nv12(pre.model_rgb)
    assert nv12.shape == (768, 512)
    assert (nv12[:512] == pre.model_rgb[:, :, 0]).all()   # luma carries the whole image
    assert (nv12[512:] == 128).all()                       # chroma neutral: nothing lost to subsampling


def test_vessels_appear_at_the_same_model_scale_whatever_the_camera_resolution_or_border():
    rgb, vessels, fov = make_fundus(565, 584, seed=2)
    big = cv2.resize(rgb, (565 * 3, 584 * 3), interpolation=cv2.INTER_CUBIC)
    canvas = np.zeros((584 * 3 + 400, 565 * 3 + 1200, 3), np.uint8)
    canvas[100:100 + 584 * 3, 900:900 + 565 * 3] = big
    a, b = preprocess(rgb), preprocess(canvas)
    assert abs(a.fov.mean() - b.fov.mean()) < 0.02
    diff = np.abs(a.model_rgb[:, :, 0].astype(int) - b.model_rgb[:, :, 0].astype(int))
    assert np.median(diff[a.fov]) <= 6


def test_restore_maps_model_space_back_onto_the_original_pixels():
    rgb, vessels, fov = make_fundus(700, 500, seed=4)
    pre = preprocess(rgb)
    v512 = map_mask(vessels, pre.geometry).astype(np.float32)
    back = restore_to_original(v512, pre.geometry) >= 0.5
    assert back.shape == (500, 700)
    inter = (back & vessels).sum()
    assert 2 * inter / (back.sum() + vessels.sum()) > 0.8


def test_restore_zeroes_everything_outside_the_field_of_view_when_given():
    rgb, _, _ = make_fundus(565, 584, seed=5)
    pre = preprocess(rgb)
    out = restore_to_original(np.ones((512, 512), np.float32), pre.geometry, pre.fov_original)
    assert out[~pre.fov_original].max() == 0.0 and out[pre.fov_original].min() > 0.99


def test_a_crop_box_leaving_the_image_is_padded_not_shifted():
    fov = np.zeros((100, 200), bool)
    fov[:, 50:150] = True
    g = square_crop_geometry(fov, 512, margin=0.1)
    assert g.side == 120 and g.y0 < 0 and g.x0 == 40


def test_nv12_needs_even_sizes():
    with pytest.raises(ValueError):
        rgb_to_nv12(np.zeros((11, 10, 3), np.uint8))


def test_params_from_a_bundle_reject_unknown_keys():
    assert PreprocessParams.from_mapping({"size": 256}).size == 256
    with pytest.raises(ValueError):
        PreprocessParams.from_mapping({"sharpen": 1})


def test_a_colour_bundle_gets_the_colour_image_on_the_same_geometry_and_the_gray_one_the_same_as_before():
    rgb, _, _ = make_fundus(565, 584, seed=1)
    gray, colour = preprocess(rgb), preprocess(rgb, PreprocessParams(colour=True))
    assert colour.geometry == gray.geometry and (colour.fov == gray.fov).all()
    assert (colour.model_rgb[:, :, 1] == gray.model_rgb[:, :, 1]).all()     # green is normalised as in gray
    assert not (colour.model_rgb[:, :, 0] == colour.model_rgb[:, :, 1]).all()
    assert "colour" not in PreprocessParams().to_dict()                     # gray bundles read as before
    assert PreprocessParams.from_mapping(PreprocessParams(colour=True).to_dict()).colour is True


def test_the_colour_nv12_path_loses_only_chroma_detail():
    from vessel_seg.device.aipp import aipp_csc_rgb, default_aipp_cfg_text, parse_aipp_cfg

    rgb, _, _ = make_fundus(565, 584, seed=1)
    model_rgb = preprocess(rgb, PreprocessParams(colour=True)).model_rgb
    seen = aipp_csc_rgb(rgb_to_nv12(model_rgb), parse_aipp_cfg(default_aipp_cfg_text(512, 512)))
    error = np.abs(seen.astype(np.int16) - model_rgb.astype(np.int16))
    assert seen.shape == model_rgb.shape and error.mean() < 3.0 and error.max() > 0


def test_a_yes_or_no_parameter_must_be_a_boolean():
    with pytest.raises(ValueError, match="true or false"):
        PreprocessParams.from_mapping({"colour": "no"})
