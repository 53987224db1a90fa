"""Synthetic fundus-like images with a known vessel ground truth.

Used by tests across the project and by the demo/camera simulator. The images are
not meant to be photo-realistic, only to share the properties the pipeline cares
about: a dark background outside a circular field of view (FOV), an orange/red
retina with smooth illumination falloff, a bright optic disc and branching,
curved, dark-red vessels of width 1-8 px (thicker near the disc) whose exact
pixel mask is returned.

Everything is deterministic for a given ``seed`` (for a given numpy version) and
uses only numpy and OpenCV.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import List, Tuple, Union

import cv2
import numpy as np

__all__ = ["make_fundus", "camera_vessel_scale", "write_fundus", "encode_image", "SUPPORTED_WRITE_EXTENSIONS"]

#: Extensions understood by :func:`write_fundus` / :func:`encode_image`.
SUPPORTED_WRITE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

_MAX_SEGMENTS = 6000          # hard bound on drawn vessel segments (keeps generation fast)
_STEP_PX = 4.0                # length of one vessel segment in pixels


def camera_vessel_scale(width: int, height: int) -> float:
    """The ``vessel_scale`` that draws an eye at a camera's size as DRIVE's 565x584 camera shows it."""
    return max(1.0, min(int(width), int(height)) / 565.0)


def _validate(width: int, height: int, fov_fraction: float, n_vessels: int, vessel_scale: float = 1.0) -> None:
    if not (0.25 <= float(vessel_scale) <= 16.0):
        raise ValueError("vessel_scale must be in [0.25, 16], got %r" % (vessel_scale,))
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError("%s must be an int, got %r" % (name, value))
        if value < 32 or value > 8192:
            raise ValueError("%s must be in [32, 8192], got %d" % (name, value))
    if not (0.1 <= float(fov_fraction) <= 2.0):
        raise ValueError("fov_fraction must be in [0.1, 2.0], got %r" % (fov_fraction,))
    if not isinstance(n_vessels, (int, np.integer)) or n_vessels < 0 or n_vessels > 64:
        raise ValueError("n_vessels must be an int in [0, 64], got %r" % (n_vessels,))


def _grow_vessels(
    rng: np.random.Generator,
    disc: Tuple[float, float],
    disc_r: float,
    centre: Tuple[float, float],
    radius: float,
    n_vessels: int,
    scale: float = 1.0,
) -> List[Tuple[float, float, float, float, float]]:
    """Grow vessel trees from the optic disc; return segments (x0, y0, x1, y1, width). ``scale`` multiplies
    the widths and the step length (the same trees, drawn for a finer camera)."""
    segments = []  # type: List[Tuple[float, float, float, float, float]]
    cx, cy = centre
    base = rng.uniform(0.0, 2.0 * math.pi)
    # stack entries: x, y, heading, width, curvature, steps_left
    stack = []  # type: List[List[float]]
    for k in range(n_vessels):
        heading = base + 2.0 * math.pi * k / max(n_vessels, 1) + rng.uniform(-0.25, 0.25)
        width = rng.uniform(5.5, 8.0)
        start_r = disc_r * rng.uniform(0.1, 0.4)
        x = disc[0] + start_r * math.cos(heading)
        y = disc[1] + start_r * math.sin(heading)
        stack.append([x, y, heading, width, rng.uniform(-0.03, 0.03), rng.uniform(90, 150)])
    while stack and len(segments) < _MAX_SEGMENTS:
        x, y, heading, width, curv, steps = stack.pop()
        # taper so the vessel reaches ~1 px at the end of its planned length
        decay = (1.0 / max(width, 1.0)) ** (1.0 / max(steps, 1.0))
        for _ in range(int(steps)):
            curv = 0.85 * curv + rng.normal(0.0, 0.025)
            heading += curv
            nx = x + _STEP_PX * scale * math.cos(heading)
            ny = y + _STEP_PX * scale * math.sin(heading)
            if math.hypot(nx - cx, ny - cy) > radius * 0.985:
                break
            segments.append((x, y, nx, ny, width * scale))
            if len(segments) >= _MAX_SEGMENTS:
                break
            x, y = nx, ny
            width = max(1.0, width * decay)
            if width > 1.8 and rng.random() < 0.035:
                child_w = max(1.0, width * rng.uniform(0.55, 0.8))
                side = 1.0 if rng.random() < 0.5 else -1.0
                child_heading = heading + side * rng.uniform(0.45, 0.95)
                stack.append([x, y, child_heading, child_w, rng.uniform(-0.03, 0.03),
                              rng.uniform(25, 80)])
                width = max(1.0, width * 0.9)
                heading -= side * 0.12
    return segments


def make_fundus(
    width: int = 565,
    height: int = 584,
    seed: int = 0,
    fov_fraction: float = 0.92,
    n_vessels: int = 12,
    jpeg: bool = False,
    vessel_scale: float = 1.0,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render a synthetic fundus image.

    Args:
        width, height: image size in pixels.
        seed: RNG seed; the same arguments always give the same images.
        fov_fraction: diameter of the circular FOV as a fraction of ``min(width, height)``
            (values > 1 give a FOV clipped by the image border, as on some cameras).
        n_vessels: number of vessel trees leaving the optic disc.
        jpeg: pass the RGB image through a JPEG encode/decode (quality 90) to get
            realistic compression artefacts; the masks are unaffected.
        vessel_scale: vessel widths and lengths in pixels are multiplied by this (1 draws them for a
            DRIVE-size camera; a 3504x2336 frame of the same eye wants about 4, see ``camera_vessel_scale``).

    Returns:
        ``(rgb, vessels, fov)``: ``rgb`` uint8 (H, W, 3) in RGB order, ``vessels`` bool (H, W)
        ground-truth vessel mask (always inside the FOV), ``fov`` bool (H, W) FOV mask.
    """
    _validate(width, height, fov_fraction, n_vessels, vessel_scale)
    rng = np.random.default_rng(int(seed))
    h, w = int(height), int(width)

    cx = (w - 1) / 2.0 + rng.uniform(-0.01, 0.01) * w
    cy = (h - 1) / 2.0 + rng.uniform(-0.01, 0.01) * h
    radius = float(fov_fraction) * min(w, h) / 2.0

    xx = np.arange(w, dtype=np.float32)[None, :]
    yy = np.arange(h, dtype=np.float32)[:, None]
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    fov = dist <= radius

    # Retina: base colour with radial illumination falloff and a low-frequency shading field.
    base = np.array([rng.uniform(185, 215), rng.uniform(78, 98), rng.uniform(28, 42)], np.float32)
    hx = cx + rng.uniform(-0.15, 0.15) * radius
    hy = cy + rng.uniform(-0.15, 0.15) * radius
    rr = np.sqrt((xx - hx) ** 2 + (yy - hy) ** 2) / radius
    illum = 1.0 - 0.45 * np.minimum(rr, np.float32(1.3)) ** 2
    shade_small = rng.uniform(0.93, 1.07, size=(6, 6)).astype(np.float32)
    shade = cv2.resize(shade_small, (w, h), interpolation=cv2.INTER_CUBIC)
    gain = illum * shade

    # Optic disc: bright yellowish blob on one side of the centre.
    side = 1.0 if rng.random() < 0.5 else -1.0
    disc = (cx + side * radius * rng.uniform(0.3, 0.42), cy + radius * rng.uniform(-0.08, 0.08))
    disc_r = radius * rng.uniform(0.11, 0.15)
    dd2 = ((xx - disc[0]) ** 2 + (yy - disc[1]) ** 2) / np.float32(disc_r * disc_r)
    disc_w = np.clip(1.25 - 0.75 * dd2, 0.0, 1.0)
    disc_w = 0.8 * disc_w * disc_w * (3.0 - 2.0 * disc_w)    # smoothstep edge, 80 % opacity
    disc_col = np.array([250.0, 215.0, 150.0], np.float32)

    # Vessels: exact mask (hard lines) and a contrast map for darkening the image.
    vessel_u8 = np.zeros((h, w), np.uint8)
    contrast = np.zeros((h, w), np.float32)
    vs = float(vessel_scale)
    for x0, y0, x1, y1, vw in _grow_vessels(rng, disc, disc_r, (cx, cy), radius, n_vessels, vs):
        thick = int(min(8 * vs, max(1, round(vw))))
        p0 = (int(round(x0)), int(round(y0)))
        p1 = (int(round(x1)), int(round(y1)))
        cv2.line(vessel_u8, p0, p1, 1, thickness=thick, lineType=cv2.LINE_8)
        cv2.line(contrast, p0, p1, float(0.38 + 0.06 * min(8.0, thick / vs)), thickness=thick,
                 lineType=cv2.LINE_8)
    vessels = (vessel_u8 > 0) & fov
    contrast = cv2.GaussianBlur(contrast, (3, 3), 0.6)
    darkening = (0.35, 0.7, 0.5)                             # vessels show best in green
    # Soft FOV edge (entirely inside the FOV), so the background stays dark.
    edge = np.clip((radius - dist) / 2.0, 0.0, 1.0)

    # One noise field, shifted per channel: cheap, and uncorrelated enough between channels.
    noise = rng.standard_normal((h, w + 2), dtype=np.float32) * np.float32(2.0)
    rgb = np.empty((h, w, 3), np.uint8)
    for c in range(3):
        chan = base[c] * gain
        chan = chan * (1.0 - disc_w) + disc_col[c] * disc_w
        chan = chan * (1.0 - darkening[c] * contrast)
        chan = chan * edge + 3.0 * (1.0 - edge)
        chan += noise[:, c:c + w]
        chan += 0.5
        np.clip(chan, 0, 255, out=chan)
        rgb[:, :, c] = chan

    if jpeg:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [int(cv2.IMWRITE_JPEG_QUALITY), 90])
        if not ok:  # pragma: no cover - OpenCV always encodes uint8 BGR
            raise RuntimeError("OpenCV failed to JPEG-encode the synthetic image")
        rgb = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return rgb, vessels, fov


def encode_image(rgb: np.ndarray, extension: str, jpeg_quality: int = 95) -> bytes:
    """Encode an RGB uint8 image to the file format named by ``extension`` (e.g. ``.png``)."""
    ext = extension.lower()
    if not ext.startswith("."):
        ext = "." + ext
    if ext not in SUPPORTED_WRITE_EXTENSIONS:
        raise ValueError("unsupported image extension %r (supported: %s)"
                         % (extension, ", ".join(SUPPORTED_WRITE_EXTENSIONS)))
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("expected an RGB uint8 (H, W, 3) array, got %s %s" % (rgb.dtype, rgb.shape))
    params = []  # type: List[int]
    if ext in (".jpg", ".jpeg"):
        params = [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)]
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise RuntimeError("OpenCV could not encode a %s image" % ext)
    return buf.tobytes()


def write_fundus(
    path: Union[str, "os.PathLike[str]"],
    width: int = 565,
    height: int = 584,
    seed: int = 0,
    fov_fraction: float = 0.92,
    n_vessels: int = 12,
    jpeg_quality: int = 95,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render a synthetic fundus (see :func:`make_fundus`) and write it to ``path``.

    The format is chosen from the extension (``.png``, ``.jpg``/``.jpeg``, ``.tif``/``.tiff``).
    The file is written in one ``write`` call (not atomically: callers that need atomic
    appearance write to a temporary name and rename). Returns ``(rgb, vessels, fov)``
    where ``rgb`` is the image before encoding (JPEG files decode slightly differently).
    """
    p = Path(path)
    rgb, vessels, fov = make_fundus(width, height, seed, fov_fraction, n_vessels)
    data = encode_image(rgb, p.suffix, jpeg_quality)
    with open(str(p), "wb") as fh:
        fh.write(data)
    return rgb, vessels, fov
