"""The fast thinning (whole-image codes, then sparse updates) against a plain Zhang-Suen written out
directly, bit for bit, and the whole-image neighbour codes against the per-pixel ones."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vessel_seg.pipeline.engine import skeleton as S


def plain_thin(mask: np.ndarray, max_iterations: int = 1000) -> np.ndarray:
    """Zhang-Suen re-evaluating every foreground pixel in every sub-iteration, then the staircase passes."""
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = mask.astype(bool)
    flat = padded.reshape(-1)
    offsets = S._offsets(w + 2)
    for _ in range(max_iterations):
        deleted = False
        for lut in (S._STEP1, S._STEP2):
            idx = np.flatnonzero(flat)
            gone = idx[lut[S.neighbour_codes(flat, idx, offsets)]]
            flat[gone] = 0
            deleted = deleted or gone.size > 0
        if not deleted:
            break
    idx = np.flatnonzero(flat)
    for lut in S._CORNERS:
        for parity in (0, 1):
            rows, cols = np.divmod(idx, w + 2)
            sel = idx[(rows + cols) % 2 == parity]
            sel = sel[flat[sel] == 1]
            flat[sel[lut[S.neighbour_codes(flat, sel, offsets)]]] = 0
    return padded[1:-1, 1:-1].astype(bool)


def random_masks(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for i in range(count):
        h, w = (int(v) for v in rng.integers(1, 70, size=2))
        m = rng.random((h, w)) < rng.uniform(0.1, 0.9)
        if i % 3 == 1:
            k = int(rng.integers(2, 6))
            m = cv2.dilate(m.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
        elif i % 3 == 2:
            m = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), float(rng.uniform(0.5, 3))) > 0.5
        yield m


def test_the_code_image_agrees_with_the_per_pixel_codes_for_every_code():
    # every 3x3 neighbourhood once: code c around the centre of its own 3x3 block
    img = np.zeros((3, 3 * 256), np.uint8)
    for c in range(256):
        for k, (dy, dx) in enumerate(S.NEIGHBOURS):
            img[1 + dy, 3 * c + 1 + dx] = (c >> k) & 1
    codes = S.neighbour_code_image(img)
    assert codes.dtype == np.uint8
    assert list(codes[1, 1::3]) == list(range(256))


@pytest.mark.parametrize("seed", [0, 1])
def test_the_code_image_agrees_with_neighbour_codes_on_random_images(seed):
    rng = np.random.default_rng(seed)
    img = (rng.random((37, 53)) < 0.5).astype(np.uint8)
    padded = np.zeros((39, 55), np.uint8)
    padded[1:-1, 1:-1] = img
    idx = np.flatnonzero(np.ones_like(padded[1:-1, 1:-1], bool))
    rows, cols = np.divmod(idx, 53)
    flat_idx = (rows + 1) * 55 + cols + 1
    expected = S.neighbour_codes(padded.reshape(-1), flat_idx, S._offsets(55)).reshape(37, 53)
    assert np.array_equal(S.neighbour_code_image(img), expected)


@pytest.mark.parametrize("dense_min", [1, 3, 25, S.DENSE_MIN_DELETED])
def test_thinning_is_bit_for_bit_the_plain_zhang_suen(monkeypatch, dense_min):
    """Whatever sub-iteration the whole-image phase hands over to the sparse one."""
    monkeypatch.setattr(S, "DENSE_MIN_DELETED", dense_min)
    for i, m in enumerate(random_masks(dense_min, 60)):
        limit = 1 + i % 4 if i % 5 == 0 else 1000
        skel, codes = S.thin_with_codes(m, limit)
        assert np.array_equal(skel, plain_thin(m, limit)), i
        assert np.array_equal(codes, S.neighbour_code_image(skel.view(np.uint8)))
        assert np.array_equal(S.thin(m, limit), skel)


def test_thinning_of_thick_drawn_vessels_is_the_plain_zhang_suen():
    rng = np.random.default_rng(5)
    img = np.zeros((300, 280), np.uint8)
    for _ in range(25):
        p, q = rng.integers(0, 280, size=2), rng.integers(0, 280, size=2)
        cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 1, int(rng.integers(1, 14)))
    cv2.circle(img, (150, 150), 30, 1, -1)
    for limit in (3, 1000):
        assert np.array_equal(S.thin(img.astype(bool), limit), plain_thin(img.astype(bool), limit))


def test_thinning_edge_cases():
    for m in (np.zeros((5, 5), bool), np.ones((1, 1), bool), np.ones((3, 40), bool), np.ones((30, 30), bool)):
        assert np.array_equal(S.thin(m), plain_thin(m))
    assert np.array_equal(S.thin(np.ones((9, 9), bool), 0), plain_thin(np.ones((9, 9), bool), 0))
