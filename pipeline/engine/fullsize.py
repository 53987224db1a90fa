"""Original-size result images produced on first request, then kept in the result folder.

A finished result stores what they are made from: probability.bin (the model output; for a tiled, high-resolution
result probability_hires.png, its working-size map), fov.png (the field of
view on a small copy), result.json (geometry on the original image, threshold, overlay opacity) and, for
overlay.png and input.jpg, the input file itself (found by the daemon; its sha256 must match). Each image is
made by the same functions, from the same numbers, as an eager render (``render.render_outputs``), so it is
the same pixels. One image is made at a time (bounded memory: an 8 MP overlay needs about 150 MiB while made).
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import cv2
import numpy as np

from vessel_seg.pipeline.engine.binfile import read_probability_bin
from vessel_seg.pipeline.engine.dicom_decode import decode_input
from vessel_seg.pipeline.engine.render import full_size_file, input_preview_jpeg
from vessel_seg.pipeline.shared.preprocess import Geometry, fov_from_small, restore_to_original
from vessel_seg.pipeline.store.results import write_result_file
from vessel_seg.vocabulary import DEFERRABLE_RESULT_FILES, FOV_PNG, PROBABILITY_BIN, PROBABILITY_HIRES_PNG, sha256_file

log = logging.getLogger(__name__)

#: The images that need the decoded input (the others come from probability.bin and fov.png alone).
NEEDS_INPUT = ("overlay.png", "input.jpg")
DEFAULT_OVERLAY_ALPHA = 0.6


def encode_fov_png(fov_small: np.ndarray) -> bytes:
    """fov.png bytes of a small FOV mask (0/1 or bool)."""
    ok, buf = cv2.imencode(".png", (np.asarray(fov_small) > 0).astype(np.uint8) * 255)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _probability_u8(prob: np.ndarray) -> np.ndarray:
    """round(p x 255) as uint8: how probability_hires.png stores a probability."""
    return np.clip(np.asarray(prob, dtype=np.float32) * np.float32(255.0) + np.float32(0.5), 0, 255).astype(np.uint8)


def encode_probability_png(prob: np.ndarray) -> bytes:
    """probability_hires.png bytes: the probability as 8-bit gray (round(p x 255))."""
    ok, buf = cv2.imencode(".png", _probability_u8(prob))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def read_probability_png(path: Path) -> np.ndarray:
    """The probability of probability_hires.png (float32 in [0, 1])."""
    q = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if q is None:
        raise ValueError("cannot read %s" % path)
    return q.astype(np.float32) * np.float32(1.0 / 255.0)


def quantised(prob: np.ndarray) -> np.ndarray:
    """The probability as probability_hires.png stores it (what a tiled result's images are made from)."""
    return _probability_u8(prob).astype(np.float32) * np.float32(1.0 / 255.0)


def read_fov_png(path: Path) -> np.ndarray:
    """The small FOV mask of fov.png (uint8 0/1)."""
    small = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if small is None:
        raise ValueError("cannot read %s" % path)
    return (small > 0).astype(np.uint8)


def full_probability(prob: np.ndarray, geometry: Geometry, fov_small: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(probability, FOV) at the original size: the model-space map (any square size) mapped back, 0 outside
    the FOV."""
    fov = fov_from_small(fov_small, geometry.width, geometry.height)
    return restore_to_original(prob, geometry, fov), fov


class FullSizeFiles(object):
    """The ``ResultStore`` producer: makes a deferred image of a result folder and writes it there.

    ``find_input(meta)`` returns where the result's input file is now (or None when it is gone).
    """

    def __init__(self, find_input: Callable[[Dict[str, Any]], Optional[Path]], max_pixels: int = 200000000) -> None:
        self.find_input = find_input
        self.max_pixels = int(max_pixels)
        self._lock = threading.Lock()

    def __call__(self, result_dir: Path, name: str, meta: Dict[str, Any]) -> Optional[Path]:
        if name not in DEFERRABLE_RESULT_FILES:
            return None
        with self._lock:
            path = result_dir / name
            if path.is_file():                      # made by a request served just before this one
                return path
            data = self.render(result_dir, name, meta)
            if data is None:
                return None
            write_result_file(result_dir, name, data)
            log.info("result %s: %s made on request (%d bytes)", result_dir.name, name, len(data))
            return path

    def render(self, result_dir: Path, name: str, meta: Dict[str, Any]) -> Optional[bytes]:
        """The bytes of ``name`` for this result, or None when its input is needed and gone."""
        geometry = Geometry(**{k: int(v) for k, v in meta["geometry"].items()})
        threshold = float(meta["threshold"])
        alpha = float(meta.get("overlay_alpha", DEFAULT_OVERLAY_ALPHA))
        rgb = None
        if name in NEEDS_INPUT:
            rgb = self._input_rgb(meta, (geometry.width, geometry.height))
            if rgb is None:
                return None
            if name == "input.jpg":
                return input_preview_jpeg(rgb)
        hires = result_dir / PROBABILITY_HIRES_PNG
        if hires.is_file():                         # a tiled result: its working-size map
            prob = read_probability_png(hires)
        else:
            prob = read_probability_bin(result_dir / PROBABILITY_BIN)
            prob = prob.reshape(int(round(prob.size ** 0.5)), -1)
        prob_full, _fov = full_probability(prob, geometry, read_fov_png(result_dir / FOV_PNG))
        return full_size_file(name, prob_full, threshold, alpha, rgb)

    def _input_rgb(self, meta: Dict[str, Any], size: Tuple[int, int]) -> Optional[np.ndarray]:
        path = self.find_input(meta)
        if path is None:
            log.warning("result %s: its input %s is gone; overlay.png and input.jpg cannot be made",
                        meta.get("id"), meta.get("source"))
            return None
        frame = meta.get("frame") if isinstance(meta.get("frame"), dict) else None
        expected = frame.get("file_sha256") if frame else meta.get("sha256")   # a frame's sha256 is derived
        if expected and sha256_file(path) != expected:
            log.warning("result %s: %s no longer holds its input (content changed)", meta.get("id"), path)
            return None
        decoded = decode_input(path, max_bytes=1 << 40, max_pixels=self.max_pixels,
                               frame=int(frame["index"]) if frame else None)
        if decoded.size != tuple(size):
            log.warning("result %s: %s decodes to %s, the result says %s", meta.get("id"), path, decoded.size, size)
            return None
        return decoded.rgb
