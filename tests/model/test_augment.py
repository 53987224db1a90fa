"""Geometric augmentation of model-space samples (image, soft label, FOV mask)."""
from __future__ import annotations

import numpy as np

from training.augment import geometric, rotate_scale


def _vertical_line_sample(size: int = 65):
    x = np.full((size, size, 3), 40, np.uint8)
    y = np.zeros((size, size), np.float32)
    m = np.zeros((size, size), bool)
    c = size // 2
    x[:, c] = 200
    y[:, c] = 1.0
    yy, xx = np.mgrid[:size, :size]
    m[(yy - c) ** 2 + (xx - c) ** 2 <= (c - 2) ** 2] = True
    return x, y, m


def test_no_rotation_and_no_zoom_leave_a_sample_unchanged():
    x, y, m = _vertical_line_sample()
    rx, ry, rm = rotate_scale(x, y, m, 0.0, 1.0)
    assert np.array_equal(rx, x) and np.allclose(ry, y) and np.array_equal(rm, m)


def test_a_rotation_turns_image_label_and_mask_together():
    x, y, m = _vertical_line_sample()
    rx, ry, rm = rotate_scale(x, y, m, 90.0, 1.0)
    c = y.shape[0] // 2
    assert ry[c, 5:-5].min() > 0.99 and ry[5:c - 3, c].max() < 0.01    # the vertical vessel is now horizontal
    assert rx[c, 5:-5].min() > 190 and rm.dtype == bool and rm.sum() == m.sum()  # a centred disc is unchanged


def test_an_odd_angle_keeps_labels_soft_and_in_range_and_the_image_border_filled():
    x, y, m = _vertical_line_sample()
    rx, ry, rm = rotate_scale(x, y, m, 33.0, 1.1)
    assert 0.0 <= ry.min() and ry.max() <= 1.0 and ((ry > 0.01) & (ry < 0.99)).any()
    assert rx[0, 0].tolist() == [40, 40, 40]          # corners come from the replicated fill, not black
    assert rm.sum() > m.sum()                         # zoomed in by 1.1: the disc grows


def test_a_zoom_changes_the_width_of_a_vessel():
    x, y, m = _vertical_line_sample()
    y[:, 30:35] = 1.0
    _, wide, _ = rotate_scale(x, y, m, 0.0, 1.2)
    _, thin, _ = rotate_scale(x, y, m, 0.0, 0.8)
    assert wide[32].sum() > y[32].sum() > thin[32].sum()


def test_without_rotation_or_zoom_geometric_draws_the_same_random_numbers_as_before():
    """Runs trained before --rotate existed must replay the same samples."""
    x, y, m = _vertical_line_sample(64)
    a = geometric(x, y, m, np.random.default_rng(3), 32)
    b = geometric(x, y, m, np.random.default_rng(3), 32, rotate=0.0, scale_jitter=0.0)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    rng = np.random.default_rng(3)
    rng.integers(0, 4), rng.random(), rng.integers(0, 33), rng.integers(0, 33)
    used = np.random.default_rng(3)
    geometric(x, y, m, used, 32)
    assert used.random() == rng.random()


def test_rotation_and_zoom_are_drawn_within_their_limits():
    x, y, m = _vertical_line_sample(64)
    for seed in range(20):
        gx, gy, gm = geometric(x, y, m, np.random.default_rng(seed), 64, rotate=10.0, scale_jitter=0.05)
        assert gx.shape == x.shape and gy.shape == y.shape and gm.shape == m.shape
        # within 10 degrees of vertical or horizontal (after rot90/flip) the line stays a line through the centre
        assert gy[30:34, 30:34].max() > 0.5
