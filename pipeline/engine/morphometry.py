"""Retinal vessel morphometry of a binary mask: density (FOV, zones B and C), fractal dimension, tortuosity,
width, length, branch and end points. Definitions, formulas and references: docs/MORPHOMETRY.md.

Everything is measured on a *working grid*: the FOV's bounding box of the original-geometry mask resampled
so that the FOV diameter is ``WORK_DIAMETER`` pixels (area-averaged when shrinking, >= 0.5 kept). Lengths
and widths are reported as fractions of the FOV diameter (``*_fovd``, camera-independent) and in pixels
of the original image (``*_px`` = fraction x the FOV diameter in original pixels).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from vessel_seg.pipeline.engine.optic_disc import OpticDisc, locate_optic_disc
from vessel_seg.pipeline.engine.skeleton import neighbour_code_image, path_length_of_codes, thin_with_codes

log = logging.getLogger(__name__)

VERSION = 1
WORK_DIAMETER = 768                   # working-grid pixels per FOV diameter
BOX_SIZES_FOVD = (2 / 1024.0, 4 / 1024.0, 8 / 1024.0, 16 / 1024.0, 32 / 1024.0, 64 / 1024.0, 128 / 1024.0)
MIN_SEGMENT_FOVD = 10 / 1024.0        # segments shorter than this do not enter tortuosity
MAX_DENSITY = 0.35                    # above: not a vessel tree (retinas: 0.05-0.25); no skeleton measures
MAX_THINNING_FOVD = 0.05             # thinning stops after this many FOV diameters of erosion (vessels: < 0.01)
SMOOTH_FOVD = 6 / 1024.0              # Gaussian sigma along a segment for its curvature
ZONE_B = (2.0, 3.0)                   # zone B: 2..3 disc radii from the disc centre (0.5..1 DD from its margin)
ZONE_C = (2.0, 5.0)                   # zone C: 2..5 disc radii (0.5..2 DD from the margin)
WIDTH_BIN_FOVD = 0.002                # width histogram: bins of 0.002 FOV diameters ...
WIDTH_BINS = 15                       # ... from 0 to 0.03 (the last bin takes everything wider)


@dataclass
class WorkGrid:
    """The mask and FOV on the working grid, and how it maps back to the original."""

    mask: np.ndarray          # bool (h, w)
    fov: np.ndarray           # bool (h, w)
    bbox: Tuple[int, int, int, int]   # FOV bounding box in the original: x, y, w, h
    diameter: float           # FOV diameter in original pixels
    scale: float              # working pixels per original pixel

    def to_work(self, x: float, y: float) -> Tuple[float, float]:
        """Original pixel coordinates -> working grid coordinates."""
        bx, by = self.bbox[0], self.bbox[1]
        return (x - bx + 0.5) * self.scale - 0.5, (y - by + 0.5) * self.scale - 0.5


def _resample(binary: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Binary image (bool, or uint8 0/255) -> ``size`` (w, h), kept where the resampled value is >= 128.

    Shrinking by r >= 2 first averages k x k blocks (k = floor(r): OpenCV's fast integer INTER_AREA path),
    then interpolates bilinearly to the exact size; growing is bilinear."""
    src = binary.view(np.uint8) * np.uint8(255) if binary.dtype == bool else binary
    k = int(min(src.shape[1] / float(size[0]), src.shape[0] / float(size[1])))
    if k >= 2:
        h, w = (src.shape[0] // k) * k, (src.shape[1] // k) * k
        src = cv2.resize(src[:h, :w], (w // k, h // k), interpolation=cv2.INTER_AREA)
    # > 127 as 0/1, viewed as bool: the same as ">= 128", cheaper
    return cv2.threshold(cv2.resize(src, size, interpolation=cv2.INTER_LINEAR), 127, 1,
                         cv2.THRESH_BINARY)[1].view(bool)


def fov_box(fov: np.ndarray) -> Tuple[int, int, int, int]:
    """Bounding box (x, y, w, h) of the FOV; ValueError when it is empty."""
    bx, by, bw, bh = cv2.boundingRect(np.ascontiguousarray(fov).view(np.uint8))
    if bw == 0 or bh == 0:
        raise ValueError("empty field of view")
    return int(bx), int(by), int(bw), int(bh)


def work_grid(mask_box: np.ndarray, fov_box_: np.ndarray, bbox: Tuple[int, int, int, int],
              work_diameter: int = WORK_DIAMETER) -> WorkGrid:
    """Mask and FOV already cut to the FOV's bounding box ``bbox``, resampled so the FOV diameter is
    ``work_diameter`` pixels."""
    if mask_box.dtype != np.uint8:
        mask_box = np.asarray(mask_box, dtype=bool)
    fov_box_ = np.asarray(fov_box_, dtype=bool)
    if mask_box.shape != fov_box_.shape or mask_box.shape != (bbox[3], bbox[2]):
        raise ValueError("mask %s and FOV %s do not match the box %s" % (mask_box.shape, fov_box_.shape, bbox))
    diameter = float(max(bbox[2], bbox[3]))
    scale = work_diameter / diameter
    size = (max(1, int(round(bbox[2] * scale))), max(1, int(round(bbox[3] * scale))))
    m = _resample(mask_box, size)
    # the FOV is a smooth disc: nearest-neighbour sampling is exact to a working pixel and much cheaper
    f = cv2.resize(fov_box_.view(np.uint8), size, interpolation=cv2.INTER_NEAREST).view(bool)   # 0/1 stays 0/1
    return WorkGrid(mask=cv2.bitwise_and(m.view(np.uint8), f.view(np.uint8)).view(bool), fov=f, bbox=bbox,
                    diameter=diameter, scale=scale)


# ------------------------------------------------------------------------------------------- fractal dimension
def box_counts(binary: np.ndarray, sizes: List[int]) -> List[int]:
    """Number of boxes of each size (powers of two, ascending) on the image's grid holding a foreground pixel."""
    if any(s & (s - 1) or s < 1 for s in sizes):
        raise ValueError("box sizes must be powers of two")
    top = max(sizes)
    h, w = binary.shape
    ph, pw = -(-h // top) * top, -(-w // top) * top
    a = np.zeros((ph, pw), dtype=np.uint8)
    a[:h, :w] = np.asarray(binary, dtype=bool)
    a *= np.uint8(255)
    counts = {}
    s = 1
    while True:
        if s in sizes:
            counts[s] = int(cv2.countNonZero(a))
        if s >= top:
            break
        # 2x2 blocks: OpenCV's integer area average is (sum + 2) >> 2, > 0 exactly when a pixel is set
        a = cv2.resize(a, (a.shape[1] // 2, a.shape[0] // 2), interpolation=cv2.INTER_AREA)
        a = cv2.threshold(a, 0, 255, cv2.THRESH_BINARY)[1]     # (cv2.compare misreads a 1x1 image)
        s *= 2
    return [counts[s] for s in sizes]


def _box_counts_of_pixels(idx: np.ndarray, shape: Tuple[int, int], sizes: List[int]) -> List[int]:
    """:func:`box_counts` of the image ``shape`` whose foreground is at the flat indices ``idx`` (sparse)."""
    if any(s & (s - 1) or s < 1 for s in sizes):
        raise ValueError("box sizes must be powers of two")
    rows, cols = np.divmod(idx, shape[1])
    out = []
    for s in sizes:
        shift = s.bit_length() - 1
        bw = -(-shape[1] // s)
        occupied = np.zeros((-(-shape[0] // s)) * bw, dtype=bool)
        occupied[(rows >> shift) * bw + (cols >> shift)] = True
        out.append(int(np.count_nonzero(occupied)))
    return out


def box_counting_dimension(binary: np.ndarray, sizes: List[int], counts: Optional[List[int]] = None
                           ) -> Optional[float]:
    """Minus the least-squares slope of log N(s) against log s; None for an empty image. ``counts``: the
    image's :func:`box_counts`, when already at hand."""
    n = np.array(box_counts(binary, sizes) if counts is None else counts, dtype=np.float64)
    ok = n > 0
    if np.count_nonzero(ok) < 2:
        return None
    s = np.array(sizes, dtype=np.float64)[ok]
    slope = np.polyfit(np.log(s), np.log(n[ok]), 1)[0]
    return float(-slope)


def _box_sizes(work_diameter: int) -> List[int]:
    """The box sizes of BOX_SIZES_FOVD in working pixels (powers of two, at least 1, distinct)."""
    out = []
    for f in BOX_SIZES_FOVD:
        s = 2 ** int(round(math.log(max(f * work_diameter, 1.0), 2)))
        if s not in out:
            out.append(s)
    return out


# ------------------------------------------------------------------------------------------- skeleton graph
def classify_skeleton(skel: np.ndarray, codes: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(end-point mask, branch-point mask) of a skeleton, from each pixel's 8-neighbourhood:
    an end has one neighbour, or two that touch; a branch pixel has 3 or more separate runs of neighbours.
    ``codes``: the skeleton's :func:`neighbour_code_image`, when already at hand."""
    s = np.asarray(skel, dtype=bool)
    if codes is None:
        codes = neighbour_code_image(s.view(np.uint8))
    idx = np.flatnonzero(s)
    return _classify_codes(s.shape, idx, codes.reshape(-1)[idx])


def _classify_codes(shape: Tuple[int, int], idx: np.ndarray, code: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`classify_skeleton` of the skeleton pixels at flat indices ``idx`` with codes ``code``."""
    n_nb = _POPCOUNT[code]
    runs = _RUNS[code]
    end = (n_nb == 1) | ((n_nb == 2) & (runs == 1))
    branch = runs >= 3
    end_mask = np.zeros(shape, dtype=bool)
    branch_mask = np.zeros(shape, dtype=bool)
    end_mask.reshape(-1)[idx[end]] = True
    branch_mask.reshape(-1)[idx[branch]] = True
    return end_mask, branch_mask


def _components8(idx: np.ndarray, shape: Tuple[int, int]) -> int:
    """Number of 8-connected groups of the pixels at the ascending flat indices ``idx`` of an image ``shape``
    (few pixels: label propagation over their adjacent pairs instead of labelling the whole image)."""
    n = int(idx.size)
    if n < 2:
        return n
    h, w = shape
    rows, cols = np.divmod(idx, w)
    u_parts, v_parts = [], []
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):          # each adjacent pair once: E, SW, S, SE
        ok = (rows + dy < h) & (cols + dx >= 0) & (cols + dx < w)
        src = np.flatnonzero(ok)
        target = idx[src] + dy * w + dx
        at = np.minimum(np.searchsorted(idx, target), n - 1)
        hit = idx[at] == target
        u_parts.append(src[hit])
        v_parts.append(at[hit])
    u, v = np.concatenate(u_parts), np.concatenate(v_parts)
    labels = np.arange(n)
    while u.size:
        low = np.minimum(labels[u], labels[v])
        new = labels.copy()
        np.minimum.at(new, u, low)
        np.minimum.at(new, v, low)
        new = new[new]
        if np.array_equal(new, labels):
            break
        labels = new
    return int(np.count_nonzero(labels == np.arange(n)))


def _luts() -> Tuple[np.ndarray, np.ndarray]:
    pop = np.array([bin(c).count("1") for c in range(256)], dtype=np.uint8)
    runs = np.zeros(256, dtype=np.uint8)
    for c in range(256):
        p = [(c >> k) & 1 for k in range(8)]
        runs[c] = sum(1 for k in range(8) if p[k] == 0 and p[(k + 1) % 8] == 1)
    runs[255] = 1
    return pop, runs


_POPCOUNT, _RUNS = _luts()


@dataclass
class Segments:
    """Per-segment arc length, chord and absolute turning (working pixels / radians)."""

    arc: np.ndarray
    chord: np.ndarray
    turning: np.ndarray


def segment_stats(segments: np.ndarray, smooth_sigma: float) -> Segments:
    """Measure every branch-free piece of skeleton: ordered by its outer contour (out along the piece and
    back), arc = half the contour length, chord = distance between the two turn-back points (its ends),
    turning = (sum of |tangent angle change| of the Gaussian-smoothed contour - 2 pi) / 2."""
    img = segments.view(np.uint8) if segments.dtype == bool else segments.astype(np.uint8)
    found = cv2.findContours(np.ascontiguousarray(img), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contours = found[0] if len(found) == 2 else found[1]
    contours = [c for c in contours if len(c) >= 2]
    if not contours:
        empty = np.zeros(0, dtype=np.float64)
        return Segments(empty, empty, empty)
    lengths = np.array([len(c) for c in contours], dtype=np.int64)
    pts = np.concatenate(contours).reshape(-1, 2).astype(np.float64)
    x, y = np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1])
    n_pts, n_seg = x.size, len(contours)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    cid = np.repeat(np.arange(n_seg), lengths)
    start = starts[cid]
    pos = np.arange(n_pts) - start
    # next and previous point along each closed contour
    nxt = np.arange(1, n_pts + 1)
    nxt[starts + lengths - 1] = starts
    prv = np.arange(-1, n_pts - 1)
    prv[starts] = starts + lengths - 1
    # ends: the contour turns back on itself there (previous point == next point)
    is_end = (x[prv] == x[nxt]) & (y[prv] == y[nxt])
    end_idx = np.flatnonzero(is_end)
    n_ends = np.bincount(cid[end_idx], minlength=n_seg)
    chord = np.full(n_seg, np.nan)
    two = n_ends[cid[end_idx]] == 2
    pair = end_idx[two].reshape(-1, 2)
    if pair.size:
        d = np.hypot(x[pair[:, 0]] - x[pair[:, 1]], y[pair[:, 0]] - y[pair[:, 1]])
        chord[cid[pair[:, 0]]] = d
    # smoothing along the (closed) contour: three circular moving averages (about a Gaussian of smooth_sigma)
    half = max(1, int(round(0.5 * (math.sqrt(4.0 * smooth_sigma ** 2 + 1.0) - 1.0))))
    window = _CircularWindow(starts, lengths, cid, pos, half)
    sx, sy = x, y
    for _ in range(3):
        sx, sy = window.mean(sx), window.mean(sy)
    tx, ty = sx[nxt] - sx, sy[nxt] - sy
    # arc: the smoothed path (half the closed contour), plus the pull of the smoothing at each end
    step = np.hypot(tx, ty)
    pull = np.zeros(n_pts)
    pull[end_idx] = np.hypot(sx[end_idx] - x[end_idx], sy[end_idx] - y[end_idx])
    arc = (np.bincount(cid, weights=step, minlength=n_seg) / 2.0
           + np.bincount(cid, weights=pull, minlength=n_seg))
    angle = np.arctan2(ty, tx)
    valid = step > 1e-9
    dtheta = angle - angle[prv]
    dtheta = np.abs((dtheta + np.pi) % (2.0 * np.pi) - np.pi)
    dtheta[~(valid & valid[prv])] = 0.0
    # the exact reversals at the two ends (|dtheta| = pi each) are not vessel curvature
    dtheta[is_end] = 0.0
    total = np.bincount(cid, weights=dtheta, minlength=n_seg)
    turning = total / 2.0
    return Segments(arc=arc, chord=chord, turning=turning)


class _CircularWindow:
    """Mean over positions pos-half .. pos+half of each closed sequence (concatenated; wrapping around),
    with the index arithmetic done once for several uses (the same sums, in the same order, as per use)."""

    def __init__(self, starts: np.ndarray, lengths: np.ndarray, cid: np.ndarray, pos: np.ndarray,
                 half: int) -> None:
        start = starts[cid]
        n = lengths[cid]
        # indices into [0, cumsum...]: entry j + 1 is the sum of values 0..j, entry 0 is 0.0
        self.start, self.end = start, start + n
        turns_hi, rest_hi = np.divmod(pos + half, n)
        turns_lo, rest_lo = np.divmod(pos - half - 1, n)
        self.hi, self.lo = start + rest_hi + 1, start + rest_lo + 1
        self.turns_hi, self.turns_lo = turns_hi.astype(np.float64), turns_lo.astype(np.float64)
        self.div = float(2 * half + 1)

    def mean(self, values: np.ndarray) -> np.ndarray:
        """The windowed mean of ``values``, (N,) or (N, k) (each column on its own)."""
        csum = np.zeros((values.shape[0] + 1,) + values.shape[1:], dtype=np.float64)
        np.cumsum(values, axis=0, out=csum[1:])
        before = np.take(csum, self.start, axis=0)      # sum of everything before each sequence's start
        total = np.take(csum, self.end, axis=0) - before
        turns_hi, turns_lo = self.turns_hi, self.turns_lo
        if values.ndim == 2:
            turns_hi, turns_lo = turns_hi[:, None], turns_lo[:, None]
        return ((np.take(csum, self.hi, axis=0) - before + turns_hi * total)
                - (np.take(csum, self.lo, axis=0) - before + turns_lo * total)) / self.div


def _circular_mean(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, cid: np.ndarray,
                   pos: np.ndarray, half: int) -> np.ndarray:
    """Mean over positions pos-half .. pos+half of each closed sequence (concatenated; wrapping around)."""
    return _CircularWindow(starts, lengths, cid, pos, half).mean(values)


# ------------------------------------------------------------------------------------------- the measurement
def _ratio(num: float, den: float) -> Optional[float]:
    return float(num) / float(den) if den > 0 else None


def _r(value: Optional[float], digits: int = 6) -> Optional[float]:
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)


def zone_masks(shape: Tuple[int, int], centre: Tuple[float, float], radius: float
               ) -> Dict[str, np.ndarray]:
    """Zone B and zone C rings (bool masks of ``shape``) around a disc centre (x, y) of ``radius`` pixels."""
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    d2 = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2
    out = {}
    for name, (lo, hi) in (("zone_b", ZONE_B), ("zone_c", ZONE_C)):
        out[name] = (d2 >= (lo * radius) ** 2) & (d2 < (hi * radius) ** 2)
    return out


def _zone_counts(mask: np.ndarray, fov: np.ndarray, centre: Tuple[float, float], radius: float
                 ) -> Dict[str, Tuple[int, int, int]]:
    """Per zone of :func:`zone_masks`: (pixels of the ring, of the ring in the FOV, of vessel there), computed
    on the box around the outer ring only (the pixels outside it are in no ring)."""
    h, w = mask.shape
    r_out = max(ZONE_B[1], ZONE_C[1]) * abs(radius)
    if not (np.isfinite(centre[0]) and np.isfinite(centre[1]) and np.isfinite(r_out)):
        y0, y1, x0, x1 = 0, h, 0, w
    else:
        x0 = int(min(max(math.floor(centre[0] - r_out) - 2, 0), w))
        x1 = int(min(max(math.ceil(centre[0] + r_out) + 3, x0), w))
        y0 = int(min(max(math.floor(centre[1] - r_out) - 2, 0), h))
        y1 = int(min(max(math.ceil(centre[1] + r_out) + 3, y0), h))
    if y1 <= y0 or x1 <= x0:
        return {"zone_b": (0, 0, 0), "zone_c": (0, 0, 0)}
    yy, xx = np.ogrid[y0:y1, x0:x1]
    d2 = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2
    m = mask[y0:y1, x0:x1].view(np.uint8)
    f = fov[y0:y1, x0:x1].view(np.uint8)
    out = {}
    for name, (lo, hi) in (("zone_b", ZONE_B), ("zone_c", ZONE_C)):
        if d2.size < 64:        # (OpenCV may take a tiny image for a scalar)
            ring = (d2 >= (lo * radius) ** 2) & (d2 < (hi * radius) ** 2)
            ring_fov = ring & (f != 0)
            out[name] = (int(np.count_nonzero(ring)), int(np.count_nonzero(ring_fov)),
                         int(np.count_nonzero(ring_fov & (m != 0))))
            continue
        # lo^2 <= d2 < hi^2, as OpenCV's inclusive range (the largest double below hi^2)
        zone = cv2.inRange(d2, float((lo * radius) ** 2), float(np.nextafter((hi * radius) ** 2, -np.inf)))
        zf = cv2.bitwise_and(zone, f)
        out[name] = (int(cv2.countNonZero(zone)), int(cv2.countNonZero(zf)),
                     int(cv2.countNonZero(cv2.bitwise_and(zf, m))))
    return out


def measure(mask: np.ndarray, fov: np.ndarray, rgb: Optional[np.ndarray] = None,
            disc: Optional[OpticDisc] = None, work_diameter: int = WORK_DIAMETER) -> Dict[str, Any]:
    """Every measurement of docs/MORPHOMETRY.md for one binary vessel mask in the original geometry.

    ``rgb`` (the photograph) is needed to locate the optic disc unless ``disc`` is given; without either,
    the zone densities are null with the reason.
    """
    mask = np.asarray(mask, dtype=bool)
    fov = np.asarray(fov, dtype=bool)
    if mask.shape != fov.shape:
        raise ValueError("mask %s and FOV %s differ in size" % (mask.shape, fov.shape))
    bx, by, bw, bh = box = fov_box(fov)
    crop = (slice(by, by + bh), slice(bx, bx + bw))
    return _measure_box(mask[crop], fov[crop], None if rgb is None else rgb[crop], box, disc, work_diameter)


def measure_probability(prob: np.ndarray, fov: np.ndarray, threshold: float, rgb: Optional[np.ndarray] = None,
                        work_diameter: int = WORK_DIAMETER) -> Dict[str, Any]:
    """:func:`measure` of the mask ``prob >= threshold``, thresholded only inside the FOV's box (cheaper)."""
    bx, by, bw, bh = box = fov_box(fov)
    crop = (slice(by, by + bh), slice(bx, bx + bw))
    mask = cv2.compare(np.asarray(prob[crop], dtype=np.float32), float(threshold), cv2.CMP_GE)   # uint8 0/255
    return _measure_box(mask, fov[crop], None if rgb is None else rgb[crop], box, None, work_diameter)


def _measure_box(mask: np.ndarray, fov: np.ndarray, rgb: Optional[np.ndarray], box: Tuple[int, int, int, int],
                 disc: Optional[OpticDisc], work_diameter: int) -> Dict[str, Any]:
    """:func:`measure` on mask, FOV and photograph cut to the FOV's box (at ``box`` in the original)."""
    g = work_grid(mask, fov, box, work_diameter)
    wd = float(work_diameter)
    fov_px = int(np.count_nonzero(g.fov))
    vessel_px = int(np.count_nonzero(g.mask))
    out: Dict[str, Any] = {"version": VERSION, "working_fov_diameter_px": int(work_diameter),
                           "fov_diameter_px": round(g.diameter, 1)}
    # density
    density: Dict[str, Any] = {"fov": _r(_ratio(vessel_px, fov_px)), "zone_b": None, "zone_c": None,
                               "zone_reason": None}
    if disc is None:
        if rgb is None:
            disc = OpticDisc(found=False, reason="no photograph given to locate the optic disc")
        else:
            local = locate_optic_disc(rgb, fov, vessels=mask, bbox=(0, 0, box[2], box[3]))
            disc = local if not local.found else OpticDisc(
                found=True, x=float(local.x or 0.0) + box[0], y=float(local.y or 0.0) + box[1],
                radius=local.radius, contrast=local.contrast)
    out["optic_disc"] = disc.to_dict(g.diameter)
    if disc.found:
        assert disc.x is not None and disc.y is not None and disc.radius is not None
        centre = g.to_work(disc.x, disc.y)
        for name, (ring, in_fov, vessels) in _zone_counts(g.mask, g.fov, centre, disc.radius * g.scale).items():
            density[name] = _r(_ratio(vessels, in_fov))
            ring_area = float(ring) or 1.0
            density[name + "_fov_coverage"] = _r(in_fov / ring_area, 4)
        if density["zone_b"] is None:
            density["zone_reason"] = "zones lie outside the field of view"
    else:
        density["zone_reason"] = "optic disc not found: %s" % disc.reason
    out["density"] = density
    density_fov = density["fov"] or 0.0
    if density_fov > MAX_DENSITY:
        return _not_a_vessel_tree(out, "vessel density %.2f > %.2f: the mask is not a vessel tree"
                                  % (density_fov, MAX_DENSITY))
    # skeleton and its graph
    skel, codes = thin_with_codes(g.mask, max_iterations=max(1, int(math.ceil(MAX_THINNING_FOVD * wd))))
    skel_idx = np.flatnonzero(skel)
    skel_code = codes.reshape(-1)[skel_idx]
    end_mask, branch_mask = _classify_codes(skel.shape, skel_idx, skel_code)
    n_branch = _components8(np.compress(_RUNS[skel_code] >= 3, skel_idx), skel.shape)
    out["end_points"] = int(np.count_nonzero(end_mask))
    out["branch_points"] = int(n_branch)
    # fractal dimension
    sizes = _box_sizes(work_diameter)
    out["fractal_dimension"] = {"mask": _r(box_counting_dimension(g.mask, sizes), 4),
                                "skeleton": _r(box_counting_dimension(
                                    skel, sizes, _box_counts_of_pixels(skel_idx, skel.shape, sizes)), 4),
                                "box_sizes_fovd": [round(s / wd, 6) for s in sizes]}
    # length
    total_len = path_length_of_codes(skel_code)
    out["length"] = {"total_fovd": _r(total_len / wd, 4), "total_px": _r(total_len / g.scale, 1)}
    # tortuosity over branch-free segments
    near_branch = cv2.dilate(branch_mask.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
    away = ~near_branch.reshape(-1)[skel_idx]            # skeleton pixels away from branch points
    centre = np.zeros(skel.shape, dtype=bool)
    centre.reshape(-1)[skel_idx[away]] = True
    seg = segment_stats(centre, SMOOTH_FOVD * wd)
    use = (seg.arc >= MIN_SEGMENT_FOVD * wd) & np.isfinite(seg.chord) & (seg.chord > 0)
    arc, chord, turn = seg.arc[use], seg.chord[use], seg.turning[use]
    tort: Dict[str, Any] = {"arc_chord": None, "curvature_rad_per_fovd": None, "segments": int(arc.size)}
    if arc.size:
        tort["arc_chord"] = _r(float(np.sum(arc * (arc / chord)) / np.sum(arc)), 5)
        tort["curvature_rad_per_fovd"] = _r(float(np.sum(turn) / np.sum(arc)) * wd, 4)
    out["tortuosity"] = tort
    # width: 2 x (distance to the background) - 1 at every skeleton pixel away from branch points
    out["width"] = _width(g, centre, skel_idx[away])
    return out


def _not_a_vessel_tree(out: Dict[str, Any], reason: str) -> Dict[str, Any]:
    """The skeleton-based measurements as null, with the reason (``not_measured``)."""
    log.warning("morphometry: %s", reason)
    out.update({"not_measured": reason, "end_points": None, "branch_points": None,
                "fractal_dimension": {"mask": None, "skeleton": None, "box_sizes_fovd": []},
                "length": {"total_fovd": None, "total_px": None},
                "tortuosity": {"arc_chord": None, "curvature_rad_per_fovd": None, "segments": 0},
                "width": {"mean_fovd": None, "mean_px": None, "median_fovd": None, "p90_fovd": None, "samples": 0,
                          "histogram": {"bin_fovd": WIDTH_BIN_FOVD, "fraction": [0.0] * WIDTH_BINS}}})
    return out


def _width(g: WorkGrid, centre: np.ndarray, centre_idx: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """Width statistics at the pixels ``centre`` (bool mask; or their flat indices ``centre_idx``, ascending)."""
    wd = float(g.scale * g.diameter)
    empty = {"mean_fovd": None, "mean_px": None, "median_fovd": None, "p90_fovd": None, "samples": 0,
             "histogram": {"bin_fovd": WIDTH_BIN_FOVD, "fraction": [0.0] * WIDTH_BINS}}
    if centre_idx is None:
        centre_idx = np.flatnonzero(centre)
    if not centre_idx.size:
        return empty
    dist = cv2.distanceTransform(g.mask.view(np.uint8), cv2.DIST_L2, 5)
    widths = np.maximum(2.0 * dist.reshape(-1)[centre_idx] - 1.0, 1.0) / wd
    hist = np.bincount(np.minimum((widths / WIDTH_BIN_FOVD).astype(np.int64), WIDTH_BINS - 1),
                       minlength=WIDTH_BINS).astype(np.float64)
    hist /= hist.sum()
    mean = float(widths.mean())
    return {"mean_fovd": _r(mean), "mean_px": _r(mean * g.diameter, 2),
            "median_fovd": _r(float(np.median(widths))), "p90_fovd": _r(float(np.percentile(widths, 90))),
            "samples": int(widths.size),
            "histogram": {"bin_fovd": WIDTH_BIN_FOVD, "fraction": [round(float(v), 4) for v in hist]}}


#: Values in pixels of the image measured (``working_fov_diameter_px`` is the grid's own, not the image's).
_PIXEL_KEYS = ("fov_diameter_px", "total_px", "mean_px", "radius_px", "x", "y")


def in_original_pixels(found: Dict[str, Any], scale: float) -> Dict[str, Any]:
    """``found`` (measured on an image decoded at 1/``scale`` of the original) with its pixel values in the
    original image's pixels; the FOV-diameter fractions do not change. ``scale`` 1 returns it as it is."""
    if scale == 1.0:
        return found

    def scaled(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: (round(float(v) * scale, 2) if k in _PIXEL_KEYS and isinstance(v, (int, float))
                        and not isinstance(v, bool) else scaled(v)) for k, v in obj.items()}
        if isinstance(obj, list):
            return [scaled(v) for v in obj]
        return obj

    return scaled(found)
