"""Augmentations.

Photometric and camera-like changes are applied to the *original* photograph, before the product's
preprocessing, so the network learns on exactly what the appliance would make of a different camera:
gamma, brightness, contrast, colour balance, blur, noise, JPEG, and a smaller retina inside a larger
black canvas (a wide-border camera). Geometric changes (rot90, flips, crops; optionally any angle and a small
zoom) are applied in model space.
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np


def photometric(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random camera-like variant of an RGB uint8 image."""
    f = rgb.astype(np.float32) / 255.0
    f = f ** float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))            # gamma
    f = f * rng.uniform(0.6, 1.4) * rng.uniform(0.85, 1.15, size=3)[None, None, :]  # brightness, colour
    mean = f.mean(axis=(0, 1), keepdims=True)
    f = (f - mean) * rng.uniform(0.7, 1.3) + mean                              # contrast
    if rng.random() < 0.25:
        f = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.3, 1.2))
    if rng.random() < 0.3:
        f = f + rng.normal(0, rng.uniform(0.005, 0.02), f.shape).astype(np.float32)
    out = np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        ok, buf = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 95))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return np.ascontiguousarray(out)


def canvas(rgb: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Rescale by 0.8-2.5x and place off-centre in a larger black canvas (label follows)."""
    h, w = rgb.shape[:2]
    s = float(rng.uniform(0.8, 2.5))
    nw, nh = int(w * s), int(h * s)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    img = cv2.resize(rgb, (nw, nh), interpolation=interp)
    lab = cv2.resize(label.astype(np.float32), (nw, nh), interpolation=cv2.INTER_LINEAR)
    cw, ch = int(nw * rng.uniform(1.0, 1.6)), int(nh * rng.uniform(1.0, 1.3))
    x0, y0 = int(rng.integers(0, cw - nw + 1)), int(rng.integers(0, ch - nh + 1))
    big = np.zeros((ch, cw, 3), np.uint8)
    big[y0:y0 + nh, x0:x0 + nw] = img
    big_lab = np.zeros((ch, cw), np.float32)
    big_lab[y0:y0 + nh, x0:x0 + nw] = lab
    return big, big_lab


def rotate_scale(x: np.ndarray, y: np.ndarray, m: np.ndarray, angle: float, scale: float,
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotate by ``angle`` degrees and zoom by ``scale`` about the centre of model-space arrays. The image and
    the soft label are interpolated linearly, the FOV mask by nearest neighbour; the image's border is
    replicated (the fill outside the FOV), the label and the mask are 0 there."""
    h, w = y.shape[:2]
    mat = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, scale)
    x = cv2.warpAffine(np.ascontiguousarray(x), mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    y = cv2.warpAffine(np.ascontiguousarray(y, dtype=np.float32), mat, (w, h), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    m = cv2.warpAffine(np.ascontiguousarray(m, dtype=np.uint8), mat, (w, h), flags=cv2.INTER_NEAREST,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    return x, y, m


def geometric(x: np.ndarray, y: np.ndarray, m: np.ndarray, rng: np.random.Generator, patch: int,
              rotate: float = 0.0, scale_jitter: float = 0.0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random rot90/flip and a random ``patch`` crop of model-space arrays (H, W). With ``rotate`` > 0, also a
    rotation by up to that many degrees either way; with ``scale_jitter`` > 0, a zoom by a factor within
    1 +/- that fraction. Both are off by default: on DRIVE they lowered the validation AUC (TRAINING_NOTES)."""
    if rotate > 0 or scale_jitter > 0:
        angle = float(rng.uniform(-rotate, rotate)) if rotate > 0 else 0.0
        scale = float(rng.uniform(1.0 - scale_jitter, 1.0 + scale_jitter)) if scale_jitter > 0 else 1.0
        x, y, m = rotate_scale(x, y, m, angle, scale)
    k = int(rng.integers(0, 4))
    x, y, m = np.rot90(x, k), np.rot90(y, k), np.rot90(m, k)
    if rng.random() < 0.5:
        x, y, m = x[:, ::-1], y[:, ::-1], m[:, ::-1]
    if patch < x.shape[0]:
        i = int(rng.integers(0, x.shape[0] - patch + 1))
        j = int(rng.integers(0, x.shape[1] - patch + 1))
        x, y, m = x[i:i + patch, j:j + patch], y[i:i + patch, j:j + patch], m[i:i + patch, j:j + patch]
    return np.ascontiguousarray(x), np.ascontiguousarray(y), np.ascontiguousarray(m)
