"""The morphometry's cheaper helpers against the plain computations they replace."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from vessel_seg.pipeline.engine import morphometry as M
from vessel_seg.pipeline.engine import skeleton as S


def plain_path_length(skel: np.ndarray) -> float:
    h, w = skel.shape
    p = np.zeros((h + 2, w + 2), dtype=bool)
    p[1:-1, 1:-1] = skel
    c = p[1:-1, 1:-1]
    east, south = c & p[1:-1, 2:], c & p[2:, 1:-1]
    se = c & p[2:, 2:] & ~p[1:-1, 2:] & ~p[2:, 1:-1]
    sw = c & p[2:, :-2] & ~p[1:-1, :-2] & ~p[2:, 1:-1]
    return float(S.KULPA_EVEN * (np.count_nonzero(east) + np.count_nonzero(south))
                 + S.KULPA_ODD * (np.count_nonzero(se) + np.count_nonzero(sw)))


def random_skeletons(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        img = np.zeros((int(rng.integers(20, 120)), int(rng.integers(20, 120))), np.uint8)
        for _ in range(int(rng.integers(1, 8))):
            p = tuple(int(v) for v in rng.integers(0, 120, size=2))
            q = tuple(int(v) for v in rng.integers(0, 120, size=2))
            cv2.line(img, p, q, 1, int(rng.integers(1, 7)))
        yield S.thin(img.astype(bool))


def test_path_length_from_codes_is_the_pairwise_count():
    for skel in random_skeletons(0, 40):
        assert S.path_length(skel) == plain_path_length(skel)
        codes = S.neighbour_code_image(skel.view(np.uint8))
        assert S.path_length_of_codes(codes[skel]) == plain_path_length(skel)


def test_classify_with_given_codes_is_classify_without():
    for skel in random_skeletons(1, 20):
        a = M.classify_skeleton(skel)
        b = M.classify_skeleton(skel, S.neighbour_code_image(skel.view(np.uint8)))
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("seed", range(6))
def test_zone_counts_on_the_ring_box_equal_the_whole_image_masks(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(50, 300)), int(rng.integers(50, 300))
    mask, fov = rng.random((h, w)) < 0.2, rng.random((h, w)) < 0.8
    for centre, radius in (((rng.uniform(-50, w + 50), rng.uniform(-50, h + 50)), rng.uniform(1, 40)),
                           ((w / 2.0, h / 2.0), 500.0), ((3.5, 7.25), 0.3), ((-900.0, 10.0), 5.0),
                           ((0.2, 1.4), 0.5), ((w - 1.0, 2.0), 1.9)):
        zones = M.zone_masks((h, w), centre, radius)
        got = M._zone_counts(mask, fov, centre, radius)
        for name, zone in zones.items():
            zf = zone & fov
            assert got[name] == (np.count_nonzero(zone), np.count_nonzero(zf), np.count_nonzero(mask & zf))


def plain_circular_mean(values, lengths, half):
    out, start = [], 0
    for n in lengths:
        seq = values[start:start + n]
        out.append([np.mean([seq[(i + j) % n] for j in range(-half, half + 1)], axis=0) for i in range(n)])
        start += n
    return np.concatenate([np.asarray(o) for o in out])


def test_the_circular_window_is_the_wrapped_moving_mean():
    rng = np.random.default_rng(3)
    lengths = np.array([2, 3, 9, 17, 40, 5], dtype=np.int64)
    values = rng.uniform(0, 700, size=(int(lengths.sum()), 2))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    cid = np.repeat(np.arange(lengths.size), lengths)
    pos = np.arange(values.shape[0]) - starts[cid]
    window = M._CircularWindow(starts, lengths, cid, pos, 4)
    expected = plain_circular_mean(values, lengths, 4)
    assert np.allclose(window.mean(values), expected, rtol=0, atol=1e-9)
    # one column at a time gives the very same numbers as both together
    both = window.mean(values)
    assert np.array_equal(window.mean(np.ascontiguousarray(values[:, 0])), both[:, 0])
    assert np.array_equal(window.mean(np.ascontiguousarray(values[:, 1])), both[:, 1])
    assert np.array_equal(M._circular_mean(values, starts, lengths, cid, pos, 4), both)
    assert math.isfinite(float(both.sum()))


def plain_box_counts(binary: np.ndarray, sizes):
    out = []
    for s in sizes:
        h, w = binary.shape
        a = np.zeros((-(-h // s) * s, -(-w // s) * s), bool)
        a[:h, :w] = binary
        out.append(int(np.count_nonzero(a.reshape(a.shape[0] // s, s, a.shape[1] // s, s).any(axis=(1, 3)))))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_box_counts_dense_and_sparse_are_the_plain_block_counts(seed):
    rng = np.random.default_rng(seed)
    sizes = [1, 2, 4, 8, 16, 32, 64]
    for _ in range(5):
        h, w = int(rng.integers(1, 200)), int(rng.integers(1, 200))
        img = rng.random((h, w)) < rng.choice([0.001, 0.02, 0.3, 0.95])
        expected = plain_box_counts(img, sizes)
        assert M.box_counts(img, sizes) == expected
        assert M._box_counts_of_pixels(np.flatnonzero(img), img.shape, sizes) == expected
        assert M.box_counts(img, sizes[2:5]) == expected[2:5]


@pytest.mark.parametrize("seed", range(5))
def test_component_count_of_few_pixels_is_opencvs(seed):
    rng = np.random.default_rng(seed)
    for _ in range(30):
        h, w = int(rng.integers(1, 60)), int(rng.integers(1, 60))
        img = rng.random((h, w)) < rng.choice([0.01, 0.05, 0.2, 0.5])
        if rng.random() < 0.3:
            img = cv2.dilate(img.astype(np.uint8), np.ones((2, 2), np.uint8)).astype(bool)
        expected = cv2.connectedComponents(img.view(np.uint8), connectivity=8)[0] - 1
        assert M._components8(np.flatnonzero(img), img.shape) == expected


def test_median_of_halves_is_numpys_median():
    from vessel_seg.pipeline.engine.optic_disc import _median_of_halves
    rng = np.random.default_rng(9)
    for n in (1, 2, 3, 4, 5, 100, 101, 5000, 5001):
        for spread in (1, 3, 256):
            a = rng.integers(0, spread, size=(n, 2)).astype(np.uint8)
            lum = (a[:, 0].astype(np.float32) + a[:, 1].astype(np.float32)) * 0.5
            assert _median_of_halves(lum) == float(np.median(lum))
    full = np.array([0.0, 255.0, 255.0, 0.5], np.float32)
    assert _median_of_halves(full) == float(np.median(full))


def test_work_grid_is_the_thresholded_resample_within_the_fov():
    rng = np.random.default_rng(11)
    for i in range(40):
        h, w = (int(v) for v in rng.integers(1, 200, size=2))
        mask, fov = rng.random((h, w)) < 0.3, rng.random((h, w)) < 0.9
        src = mask.view(np.uint8) * np.uint8(255)
        if i % 2:
            mask = src
        for wd in (1, 5, 300):
            g = M.work_grid(mask, fov, (0, 0, w, h), wd)
            size = g.mask.shape[::-1]
            k = int(min(w / float(size[0]), h / float(size[1])))
            small = src
            if k >= 2:
                small = cv2.resize(src[:(h // k) * k, :(w // k) * k], (w // k, h // k), interpolation=cv2.INTER_AREA)
            expected_fov = cv2.resize(fov.view(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
            expected = (cv2.resize(small, size, interpolation=cv2.INTER_LINEAR) >= 128) & expected_fov
            assert g.mask.dtype == bool and np.array_equal(g.mask, expected) and np.array_equal(g.fov, expected_fov)
