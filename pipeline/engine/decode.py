"""Decode/validate stage: turn a file into an RGB uint8 image, or say precisely why not.

Checks run cheapest first and before any pixel is decoded: empty file, file size (``max_bytes``), image
type from the content (not the extension), dimensions from the header (``max_pixels``: decompression
bombs never reach the decoder; Pillow's ``DecompressionBombError`` is mapped to the same reason). Then the
image is fully decoded (truncated data is an error, never silently padded), EXIF orientation applied,
and unusual modes converted: 16-bit and 32-bit gray, float, CMYK, YCbCr, gray, bilevel, palette and
alpha (composited over black, the fundus background). Every failure is a ``DecodeError`` with a short
machine-readable ``reason`` and a human ``detail``; decode errors are permanent (the file is quarantined).
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Tuple, Type, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps

log = logging.getLogger(__name__)

MIN_SIDE = 32

# Reasons (stable strings: they appear in quarantine reason files and the journal).
EMPTY = "empty_file"
TOO_LARGE = "file_too_large"
TOO_MANY_PIXELS = "too_many_pixels"
TOO_SMALL = "image_too_small"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED = "truncated_or_corrupt"
UNSUPPORTED_MODE = "unsupported_mode"
UNREADABLE = "unreadable"

# Pillow warns (between MAX_IMAGE_PIXELS and twice that) before our own, stricter header check runs;
# the check below decides, so the warning is noise. (warnings.catch_warnings is not thread-safe.)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class DecodeError(Exception):
    """The file cannot become a model input; permanent."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__("%s: %s" % (reason, detail))
        self.reason = reason
        self.detail = detail


def check_file_size(path: Path, max_bytes: int, error: Type[DecodeError] = DecodeError) -> int:
    """The file's size; ``error`` (a DecodeError) when it cannot be read, is empty or is over ``max_bytes``."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise error(UNREADABLE, "cannot stat the file: %s" % exc)
    if size == 0:
        raise error(EMPTY, "the file is empty (0 bytes)")
    if size > max_bytes:
        raise error(TOO_LARGE, "%d bytes exceeds the limit of %d bytes (ingest.max_bytes)" % (size, max_bytes))
    return size


@dataclass
class DecodedImage:
    """A validated, decoded image."""

    rgb: np.ndarray                     # (H, W, 3) uint8, EXIF orientation applied
    format: str                         # Pillow format name, e.g. "JPEG"
    mode: str                           # the file's original Pillow mode, e.g. "I;16"
    notes: List[str] = field(default_factory=list)  # conversions applied, for result.json
    scale: int = 1                      # decoded at 1/scale of the file's size (JPEG DCT scaling)
    original_size: Optional[Tuple[int, int]] = None   # (width, height) of the full image when scale > 1

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height) of ``rgb``."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])

    @property
    def full_size(self) -> Tuple[int, int]:
        """(width, height) of the image at full resolution (EXIF orientation applied)."""
        return self.original_size if self.original_size is not None else self.size


def _to_rgb(img: "Image.Image", notes: List[str]) -> np.ndarray:
    """Convert any supported Pillow mode to an RGB uint8 array."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        if mode == "I" and arr.max() > 65535:
            top = float(arr.max())
        gray = np.clip(arr * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        notes.append("converted %s gray to 8-bit" % mode)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise DecodeError(UNSUPPORTED_MODE, "floating-point image contains NaN or infinity")
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        gray = np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
        notes.append("converted float gray to 8-bit")
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        arr = np.asarray(rgba, dtype=np.float32)
        alpha = arr[:, :, 3:4] / 255.0
        notes.append("composited %s alpha over black" % mode)
        return np.clip(arr[:, :, :3] * alpha + 0.5, 0, 255).astype(np.uint8)
    if mode in ("L", "1", "P", "CMYK", "YCbCr"):
        notes.append("converted %s to RGB" % mode)
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    try:
        converted = img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise DecodeError(UNSUPPORTED_MODE, "image mode %s cannot be converted to RGB: %s" % (mode, exc))
    notes.append("converted %s to RGB" % mode)
    return np.asarray(converted, dtype=np.uint8)


#: Pillow format names the appliance decodes (what fundus cameras write; the same set the upload page accepts).
DECODABLE_FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "PPM", "WEBP")
#: The shorter side a reduced decode keeps: pixels, or a function of the full (width, height) giving them.
MinSide = Union[int, Callable[[int, int], int]]
#: The reductions JPEG DCT scaling offers (libjpeg decodes at 1/1, 1/2, 1/4 and 1/8).
DCT_SCALES = (8, 4, 2)


def dct_scale(width: int, height: int, min_side: "MinSide", max_scale: int = 8) -> int:
    """The largest reduction in ``DCT_SCALES`` (at most ``max_scale``) keeping the shorter side >= ``min_side``
    (a number, or a function of the full width and height giving it); 1 when none does or it is 0."""
    if callable(min_side):
        min_side = int(min_side(width, height))
    if min_side <= 0:
        return 1
    for s in DCT_SCALES:
        if s <= max_scale and min(width, height) // s >= min_side:
            return s
    return 1


def _draft(img: "Image.Image", scale: int) -> int:
    """Ask the JPEG decoder for 1/scale of the size; returns the reduction it will actually apply."""
    w, h = img.size
    img.draft("RGB", (w // scale, h // scale))
    nw, nh = img.size
    for s in (1,) + tuple(reversed(DCT_SCALES)):
        if (w + s - 1) // s == nw and (h + s - 1) // s == nh:
            return s
    raise DecodeError(TRUNCATED, "unexpected reduced JPEG size %dx%d of %dx%d" % (nw, nh, w, h))


def decode_image(path: os.PathLike, max_bytes: int, max_pixels: int, min_side: "MinSide" = 0,
                 max_scale: int = 8) -> DecodedImage:
    """Validate and decode ``path``; raise ``DecodeError`` with a reason for anything unusable.

    ``min_side`` > 0: decode a JPEG reduced (at most ``max_scale`` times) while its shorter side stays at
    least ``min_side`` pixels (``DecodedImage.scale``, ``original_size``); other formats at full size.
    """
    p = Path(path)
    check_file_size(p, max_bytes)
    try:
        fh = open(str(p), "rb")
    except OSError as exc:
        raise DecodeError(UNREADABLE, "cannot open the file: %s" % exc)
    with fh:
        try:
            # Only camera formats: never hand other content (EPS, PDF, ...) to Pillow's other decoders.
            img = Image.open(fh, formats=list(DECODABLE_FORMATS))
        except Image.DecompressionBombError as exc:
            raise DecodeError(TOO_MANY_PIXELS, str(exc))
        except Image.UnidentifiedImageError:
            raise DecodeError(NOT_AN_IMAGE, "content is not a recognised image format")
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise DecodeError(TRUNCATED, "cannot read the image header: %s" % exc)
        fmt = img.format or "unknown"
        mode = img.mode
        w, h = img.size
        if w * h > max_pixels:
            raise DecodeError(TOO_MANY_PIXELS, "%dx%d = %d pixels exceeds the limit of %d (ingest.max_pixels)"
                              % (w, h, w * h, max_pixels))
        if min(w, h) < MIN_SIDE:
            raise DecodeError(TOO_SMALL, "%dx%d is smaller than %d pixels on a side" % (w, h, MIN_SIDE))
        notes: List[str] = []
        if getattr(img, "n_frames", 1) > 1:
            notes.append("multi-frame %s: used the first frame" % fmt)
        if ImageFile.LOAD_TRUNCATED_IMAGES:
            log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; truncated files may decode partially")
        scale = dct_scale(w, h, min_side, max_scale) if fmt == "JPEG" else 1
        if scale > 1:
            scale = _draft(img, scale)
        try:
            img.load()
        except Image.DecompressionBombError as exc:
            raise DecodeError(TOO_MANY_PIXELS, str(exc))
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, MemoryError) as exc:
            raise DecodeError(TRUNCATED, "decoding failed: %s" % exc)
        try:
            # without an orientation to apply, exif_transpose would only copy the decoded image
            upright = img.getexif().get(0x0112, 1) in (None, 1)
            transposed = img if upright else ImageOps.exif_transpose(img)
        except Exception as exc:  # malformed EXIF must not lose the image
            log.warning("%s: ignoring unreadable EXIF orientation: %s", p.name, exc)
            transposed = img
        if transposed is None:  # Pillow < 9.4 with in_place semantics never returns None; be safe
            transposed = img
        full = (w, h)
        if transposed.size != img.size:
            full = (h, w)
            notes.append("rotated by EXIF orientation")
        elif transposed is not img:
            orientation = img.getexif().get(0x0112, 1) if hasattr(img, "getexif") else 1
            if orientation not in (None, 1):
                notes.append("flipped by EXIF orientation %s" % orientation)
        try:
            rgb = _to_rgb(transposed, notes)
        except DecodeError:
            raise
        except (OSError, ValueError) as exc:
            raise DecodeError(TRUNCATED, "decoding failed: %s" % exc)
    rgb = np.ascontiguousarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DecodeError(UNSUPPORTED_MODE, "unexpected decoded shape %s" % (rgb.shape,))
    return DecodedImage(rgb=rgb, format=fmt, mode=mode, notes=notes, scale=scale,
                        original_size=full if scale > 1 else None)
