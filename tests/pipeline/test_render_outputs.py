"""Render stage: mask at the threshold, density inside the FOV, overlay tint, thumbnail size."""
from __future__ import annotations

import cv2
import numpy as np

from vessel_seg.pipeline.engine.render import VESSEL_TINT, density, mask_from_probability, overlay_image, render_outputs


def _decode(data, flags=cv2.IMREAD_UNCHANGED):
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


def test_mask_is_probability_at_or_above_threshold():
    prob = np.array([[0.49, 0.5, 0.51]], np.float32)
    assert mask_from_probability(prob, 0.5).tolist() == [[False, True, True]]


def test_density_counts_only_inside_the_fov():
    mask = np.zeros((10, 10), bool)
    fov = np.zeros((10, 10), bool)
    fov[:, :5] = True
    mask[:, :2] = True       # 20 vessel pixels inside the FOV
    mask[:, 8:] = True       # outside: ignored
    d, frac = density(mask, fov)
    assert d == 20 / 50.0 and frac == 0.5


def test_overlay_tints_vessels_and_leaves_background():
    rgb = np.full((4, 4, 3), 100, np.uint8)
    prob = np.zeros((4, 4), np.float32)
    prob[0, 0] = 1.0
    out = overlay_image(rgb, prob, prob >= 0.5, alpha=1.0)
    assert tuple(out[0, 0]) == VESSEL_TINT
    assert tuple(out[1, 1]) == (100, 100, 100)


def test_render_outputs_original_size_images_and_numbers():
    h, w = 120, 90
    rgb = np.full((h, w, 3), 80, np.uint8)
    prob = np.zeros((h, w), np.float32)
    prob[:, :30] = 0.9
    fov = np.ones((h, w), bool)
    r = render_outputs(rgb, prob, fov, threshold=0.5, overlay_alpha=0.6, thumb_size=64)
    assert sorted(r.files) == ["input.jpg", "mask.png", "overlay.png", "probability.png", "thumb.jpg"]
    assert _decode(r.files["input.jpg"]).shape == (h, w, 3)
    mask = _decode(r.files["mask.png"])
    assert mask.shape == (h, w) and set(np.unique(mask)) == {0, 255}
    p = _decode(r.files["probability.png"])
    assert p.dtype == np.uint8 and p[0, 0] == round(0.9 * 255) and p[0, 50] == 0
    assert _decode(r.files["overlay.png"]).shape == (h, w, 3)
    assert max(_decode(r.files["thumb.jpg"], cv2.IMREAD_COLOR).shape[:2]) == 64
    assert abs(r.vessel_density_fov - 30 / 90.0) < 1e-9 and r.fov_fraction == 1.0
