"""Optic disc location, to define the measurement zones B and C around it (docs/MORPHOMETRY.md).

A heuristic, no network: the disc is the brightest large blob of the retina, where the big vessels
converge. On a subsampled copy of the FOV (about 256 pixels across), the brightness (mean of red and
green) is blurred inside the FOV with a normalised (masked) Gaussian of sigma 0.035 FOV diameters, the
illumination background (sigma 0.15) is subtracted, and the rest is turned into a robust z-score over the
FOV (median, MAD); the vessel density, blurred with sigma 0.05, is added with weight 0.5 when a vessel mask
is given. The peak of that score is the disc
centre when its brightness z-score is at least ``MIN_CONTRAST``; otherwise the disc is reported as not found,
with the reason. The radius is that of the circle with the area of the bright region around the peak
(above half-way between retina and peak), clamped to [0.04, 0.10] FOV diameters.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

log = logging.getLogger(__name__)

WORK_DIAMETER = 256          # pixels across the FOV for the search
MIN_CONTRAST = 1.5           # brightness z-score the disc must reach
BLOB_SIGMA = 0.035           # blur of the brightness, FOV diameters
BACKGROUND_SIGMA = 0.15      # blur giving the illumination background, FOV diameters
RADIUS_RANGE = (0.04, 0.10)  # plausible disc radius, fraction of the FOV diameter
DEFAULT_RADIUS = 0.07        # used when the bright region gives no usable size


@dataclass
class OpticDisc:
    """Where the disc is, in original pixels, or why it was not found."""

    found: bool
    x: Optional[float] = None
    y: Optional[float] = None
    radius: Optional[float] = None        # original pixels
    contrast: Optional[float] = None      # brightness z-score at the centre
    reason: Optional[str] = None

    def to_dict(self, fov_diameter: float) -> Dict[str, Any]:
        """JSON form (pixels of the original image, radius also as a fraction of the FOV diameter)."""
        if not self.found:
            return {"found": False, "reason": self.reason,
                    "contrast": None if self.contrast is None else round(float(self.contrast), 3)}
        assert self.x is not None and self.y is not None and self.radius is not None
        return {"found": True, "x": round(float(self.x), 1), "y": round(float(self.y), 1),
                "radius_px": round(float(self.radius), 1),
                "radius_fovd": round(float(self.radius) / max(fov_diameter, 1e-9), 4),
                "contrast": round(float(self.contrast or 0.0), 3), "reason": None}


def _masked_blur(values: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised convolution: Gaussian blur of ``values`` counting only pixels of ``weight`` (0/1).
    A wide blur (sigma > 8 px) runs at a reduced resolution (it is smooth by construction)."""
    h, w = values.shape
    shrink = max(1, int(sigma // 4))
    num, den = values * weight, weight
    if shrink > 1:
        small = (max(1, w // shrink), max(1, h // shrink))
        num = cv2.resize(num, small, interpolation=cv2.INTER_AREA)
        den = cv2.resize(den, small, interpolation=cv2.INTER_AREA)
        sigma = sigma * small[0] / float(w)
    out = cv2.GaussianBlur(num, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(den, (0, 0), sigma), 1e-6)
    if shrink > 1:
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def _median_of_halves(values: np.ndarray) -> float:
    """``np.median`` of non-empty values that are all multiples of 0.5 in 0..255 (means of two uint8), from their
    histogram: the middle value, or the mean of the two middle ones (exact in float32 as in np.median)."""
    hist = np.bincount((values * 2.0).astype(np.int64), minlength=511)
    cum = np.cumsum(hist)
    n = int(cum[-1])
    upper = int(np.searchsorted(cum, n // 2 + 1))          # value (x2) of order statistic n // 2
    if n % 2:
        return upper / 2.0
    lower = int(np.searchsorted(cum, n // 2))              # ... and of n // 2 - 1
    return (lower + upper) / 4.0


def locate_optic_disc(rgb: np.ndarray, fov: np.ndarray, vessels: Optional[np.ndarray] = None,
                      bbox: Optional[Tuple[int, int, int, int]] = None) -> OpticDisc:
    """Find the disc in an RGB uint8 image (original size) given its FOV (and optionally the vessel mask)."""
    if bbox is None:
        bbox = cv2.boundingRect(np.asarray(fov, dtype=np.uint8))
    bx, by, bw, bh = bbox
    diameter = max(bw, bh)
    if diameter < 32:
        return OpticDisc(found=False, reason="field of view too small (%d px)" % diameter)
    step = max(1, int(diameter // WORK_DIAMETER))
    sub = rgb[by:by + bh:step, bx:bx + bw:step]
    fsub = np.ascontiguousarray(fov[by:by + bh:step, bx:bx + bw:step]).astype(np.uint8)
    d_sub = diameter / float(step)
    rim = max(1, int(round(0.03 * d_sub)))
    inner = cv2.erode(fsub, np.ones((2 * rim + 1, 2 * rim + 1), np.uint8)).astype(bool)
    if np.count_nonzero(inner) < 100:
        return OpticDisc(found=False, reason="field of view too small after removing its rim")
    lum = (sub[:, :, 0].astype(np.float32) + sub[:, :, 1].astype(np.float32)) * 0.5
    weight = inner.astype(np.float32)
    # brightness above the slowly varying illumination of the retina, in robust standard deviations
    background = _masked_blur(lum, weight, BACKGROUND_SIGMA * d_sub)
    resid = _masked_blur(lum, weight, BLOB_SIGMA * d_sub) - background
    r_in = resid[inner]
    centre = float(np.median(r_in))
    spread = 1.4826 * float(np.median(np.abs(r_in - centre))) + 1e-3
    z = (resid - centre) / spread
    bg = _median_of_halves(lum[inner]) if sub.dtype == np.uint8 else float(np.median(lum[inner]))
    score = z.copy()
    if vessels is not None:
        vsub = np.ascontiguousarray(vessels[by:by + bh:step, bx:bx + bw:step]).astype(np.float32)
        vd = _masked_blur(vsub, weight, 0.05 * d_sub)
        vin = vd[inner]
        score += 0.5 * (vd - float(vin.mean())) / (float(vin.std()) + 1e-6)
    score[~inner] = -np.inf
    py, px = np.unravel_index(int(np.argmax(score)), score.shape)
    contrast = float(z[py, px])
    if not np.isfinite(contrast) or contrast < MIN_CONTRAST:
        return OpticDisc(found=False, contrast=contrast if np.isfinite(contrast) else None,
                         reason="no region clearly brighter than the retina (contrast %.2f < %.2f)"
                         % (contrast, MIN_CONTRAST))
    radius_fovd = _radius_fraction(lum, inner, bg, (py, px), d_sub)
    cx = bx + (px + 0.5) * step - 0.5
    cy = by + (py + 0.5) * step - 0.5
    return OpticDisc(found=True, x=cx, y=cy, radius=radius_fovd * diameter, contrast=contrast)


def _radius_fraction(lum: np.ndarray, inner: np.ndarray, bg: float, peak: Tuple[int, int], d_sub: float) -> float:
    """Equivalent-circle radius of the bright region around the peak, as a fraction of the FOV diameter."""
    smooth = cv2.GaussianBlur(lum, (0, 0), 0.01 * d_sub)
    top = float(smooth[peak])
    if top <= bg:
        return DEFAULT_RADIUS
    region = ((smooth > bg + 0.5 * (top - bg)) & inner).astype(np.uint8)
    yy, xx = np.ogrid[:lum.shape[0], :lum.shape[1]]
    near = (yy - peak[0]) ** 2 + (xx - peak[1]) ** 2 <= (0.15 * d_sub) ** 2
    region &= near.astype(np.uint8)
    n, labels = cv2.connectedComponents(region, connectivity=8)
    lab = labels[peak]
    if n <= 1 or lab == 0:
        return DEFAULT_RADIUS
    area = float(np.count_nonzero(labels == lab))
    r = np.sqrt(area / np.pi) / d_sub
    return float(np.clip(r, RADIUS_RANGE[0], RADIUS_RANGE[1]))
