"""Render stage: probability map at original size -> probability.png, mask.png, overlay.png, input.jpg, thumb.jpg.

All images are encoded in memory; the result writer stores them atomically. The vessel density is the
fraction of field-of-view pixels above the threshold. ``render_summary`` makes only what a result needs at
once (thumb.jpg and the numbers, at the working resolution); ``full_size_file`` makes one original-size image
exactly as ``render_outputs`` does, for the ones produced on first request.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from vessel_seg.pipeline.engine.binfile import encode_png, probability_to_gray

#: Tint of vessels in the overlay (RGB): a green-cyan that stands out on the orange-red retina.
VESSEL_TINT = (0, 255, 200)


@dataclass
class Rendered:
    """Encoded images and the numbers for result.json."""

    files: Dict[str, bytes]          # file name -> bytes
    vessel_density_fov: float
    fov_fraction: float
    vessel_pixels: int


def mask_from_probability(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Binary vessel mask: probability >= threshold."""
    return np.asarray(prob, dtype=np.float32) >= float(threshold)


def overlay_image(rgb: np.ndarray, prob: np.ndarray, mask: np.ndarray, alpha: float) -> np.ndarray:
    """Vessels tinted over the input: opacity ``alpha`` on mask pixels, scaled by the probability."""
    weight = np.clip(np.asarray(prob, dtype=np.float32), 0.0, 1.0) * np.asarray(mask, dtype=np.float32)
    weight *= float(alpha)
    tint = np.empty_like(rgb)
    tint[:] = VESSEL_TINT
    return cv2.blendLinear(np.ascontiguousarray(rgb), tint, 1.0 - weight, weight)


def input_preview_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """The decoded input at full resolution as JPEG, so the result page can show it beside the outputs."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def thumbnail_jpeg(rgb: np.ndarray, max_side: int, quality: int = 85) -> bytes:
    """JPEG bytes of ``rgb`` scaled so its longest side is at most ``max_side``."""
    h, w = rgb.shape[:2]
    scale = min(1.0, float(max_side) / max(h, w))
    small = rgb
    if scale < 1.0:
        size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def density(mask: np.ndarray, fov: np.ndarray) -> Tuple[float, float]:
    """(vessel density inside the FOV, FOV fraction of the image)."""
    fov_pixels = int(np.count_nonzero(fov))
    fov_fraction = fov_pixels / float(fov.size) if fov.size else 0.0
    if fov_pixels == 0:
        return 0.0, fov_fraction
    return int(np.count_nonzero(mask & fov)) / float(fov_pixels), fov_fraction


def render_outputs(rgb: np.ndarray, prob_full: np.ndarray, fov_full: np.ndarray, threshold: float,
                   overlay_alpha: float, thumb_size: int) -> Rendered:
    """Render every image of a result from the original RGB and the probability at original size."""
    if prob_full.shape != rgb.shape[:2] or fov_full.shape != rgb.shape[:2]:
        raise ValueError("probability %s / FOV %s do not match the image %s"
                         % (prob_full.shape, fov_full.shape, rgb.shape[:2]))
    mask = mask_from_probability(prob_full, threshold)
    overlay = overlay_image(rgb, prob_full, mask, overlay_alpha)
    vessel_density, fov_fraction = density(mask, fov_full)
    files = {
        "probability.png": encode_png(probability_to_gray(prob_full)),
        "mask.png": encode_png(mask.astype(np.uint8) * 255),
        "overlay.png": encode_png(overlay),
        "input.jpg": input_preview_jpeg(rgb),
        "thumb.jpg": thumbnail_jpeg(overlay, thumb_size),
    }
    return Rendered(files=files, vessel_density_fov=float(vessel_density), fov_fraction=float(fov_fraction),
                    vessel_pixels=int(np.count_nonzero(mask)))


def _shrink(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """``image`` at ``size`` (W, H): halved by pyrDown while still twice as large, then area-averaged."""
    while image.shape[1] >= 2 * size[0] and image.shape[0] >= 2 * size[1]:
        image = cv2.pyrDown(image)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def render_summary(rgb: np.ndarray, prob: np.ndarray, fov: np.ndarray, threshold: float, overlay_alpha: float,
                   thumb_size: int, pixel_scale: float = 1.0) -> Rendered:
    """thumb.jpg and the numbers from the image at its working resolution (the original-size images come
    later, from ``full_size_file``). The thumbnail's overlay is blended at the thumbnail's size.
    ``pixel_scale``: full-size pixels per working pixel (``vessel_pixels`` is then an estimate at the original
    size)."""
    if prob.shape != rgb.shape[:2] or fov.shape != rgb.shape[:2]:
        raise ValueError("probability %s / FOV %s do not match the image %s" % (prob.shape, fov.shape, rgb.shape[:2]))
    mask = mask_from_probability(prob, threshold)
    vessel_density, fov_fraction = density(mask, fov)
    h, w = rgb.shape[:2]
    scale = min(1.0, float(thumb_size) / max(h, w))
    if scale < 1.0:
        size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
        weight = np.clip(prob, 0.0, 1.0)
        weight[~mask] = 0.0
        small_rgb, weight = _shrink(rgb, size), _shrink(weight, size)
        small = overlay_image(small_rgb, weight, np.ones(weight.shape, bool), overlay_alpha)
    else:
        small = overlay_image(rgb, prob, mask, overlay_alpha)
    return Rendered(files={"thumb.jpg": thumbnail_jpeg(small, thumb_size)}, vessel_density_fov=float(vessel_density),
                    fov_fraction=float(fov_fraction),
                    vessel_pixels=int(round(np.count_nonzero(mask) * float(pixel_scale))))


def full_size_file(name: str, prob_full: np.ndarray, threshold: float, overlay_alpha: float,
                   rgb: Optional[np.ndarray] = None) -> bytes:
    """One original-size image of a result, pixel for pixel what ``render_outputs`` writes under ``name``
    (overlay.png and input.jpg need the decoded input ``rgb``)."""
    if name == "probability.png":
        return encode_png(probability_to_gray(prob_full))
    mask = mask_from_probability(prob_full, threshold)
    if name == "mask.png":
        return encode_png(mask.astype(np.uint8) * 255)
    if rgb is None or rgb.shape[:2] != prob_full.shape:
        raise ValueError("%s needs the input image at %s" % (name, prob_full.shape))
    if name == "overlay.png":
        return encode_png(overlay_image(rgb, prob_full, mask, overlay_alpha))
    if name == "input.jpg":
        return input_preview_jpeg(rgb)
    raise ValueError("no original-size image %r" % (name,))
