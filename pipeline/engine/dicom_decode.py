"""DICOM inputs: recognise a DICOM file by its content, read its header, decode one frame to RGB uint8.

Accepted: Ophthalmic Photography 8 and 16 bit, VL Photographic and Secondary Capture images (single and
multi-frame), in an uncompressed transfer syntax (implicit/explicit little endian, explicit big endian,
deflated), JPEG Baseline or JPEG 2000. Compressed frames are decoded by Pillow (libjpeg, OpenJPEG): no GPL
decoder is ever loaded. Pillow converts a JPEG's YCbCr (Photometric YBR_FULL_422) to RGB itself; pydicom's
own Pillow handler would not (it returns YBR values), which is why the frames are handed to Pillow here.

Every check runs on the header before any pixel is decoded (file size, SOP class, transfer syntax, pixel
count, frame count, the pixel data's length); each failure is a :class:`DicomError`, a ``DecodeError`` with a
``dicom_*`` reason, so the scheduler quarantines the file with that reason like any other bad input.
"""
from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np
from PIL import Image

from vessel_seg.pipeline.engine.decode import (
    MIN_SIDE,
    TOO_MANY_PIXELS,
    TOO_SMALL,
    DecodedImage,
    DecodeError,
    MinSide,
    check_file_size,
    decode_image,
)
from vessel_seg.vocabulary import (
    DICOM_COMPRESSED_SYNTAXES,
    DICOM_NATIVE_SYNTAXES,
    DICOM_SOP_CLASSES,
    has_dicom_preamble,
)

__all__ = ["DicomError", "decode_dicom", "decode_input", "read_dataset", "check_header", "has_dicom_preamble"]

log = logging.getLogger(__name__)

# Reasons (stable strings: quarantine reason files and the journal).
NOT_DICOM = "dicom_invalid"
TRUNCATED = "dicom_truncated"
NO_PIXELS = "dicom_no_pixel_data"
UNSUPPORTED_SYNTAX = "dicom_unsupported_transfer_syntax"
UNSUPPORTED_SOP_CLASS = "dicom_unsupported_sop_class"
UNSUPPORTED_PIXELS = "dicom_unsupported_pixel_format"
TOO_MANY_FRAMES = "dicom_too_many_frames"
BAD_FRAME = "dicom_bad_frame"

#: The frames one file may hold (each becomes a result).
MAX_FRAMES = 256

#: SOP classes accepted and transfer syntaxes decoded (UID -> name).
SOP_CLASSES = DICOM_SOP_CLASSES
NATIVE_SYNTAXES = DICOM_NATIVE_SYNTAXES
PILLOW_SYNTAXES = DICOM_COMPRESSED_SYNTAXES
#: Transfer syntaxes decoded (UID -> name).
TRANSFER_SYNTAXES = dict(NATIVE_SYNTAXES, **PILLOW_SYNTAXES)


class DicomError(DecodeError):
    """A DICOM file that cannot become a model input; permanent (the file is quarantined with the reason)."""


def _pydicom() -> Any:
    import pydicom

    return pydicom


def read_dataset(path: os.PathLike, max_bytes: int, stop_before_pixels: bool = False) -> Any:
    """The parsed dataset of a DICOM file; DicomError when it is not one, too big or unreadable."""
    p = Path(path)
    check_file_size(p, max_bytes, DicomError)
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(str(p), force=False, stop_before_pixels=stop_before_pixels)
    except pydicom.errors.InvalidDicomError as exc:
        raise DicomError(NOT_DICOM, "not a DICOM file: %s" % exc)
    except (EOFError, ValueError, KeyError, TypeError, IndexError, OverflowError, NotImplementedError,
            AttributeError, OSError) as exc:
        raise DicomError(TRUNCATED, "cannot parse the DICOM data set: %s: %s" % (type(exc).__name__, exc))
    except Exception as exc:  # pydicom raises many kinds on damaged input; none may kill the daemon
        raise DicomError(TRUNCATED, "cannot parse the DICOM data set: %s: %s" % (type(exc).__name__, exc))
    return ds


def transfer_syntax(ds: Any) -> str:
    """The transfer syntax UID of a dataset read from a file ('' when the file meta lacks it)."""
    meta = getattr(ds, "file_meta", None)
    return str(getattr(meta, "TransferSyntaxUID", "") or "") if meta is not None else ""


def number_of_frames(ds: Any) -> int:
    """NumberOfFrames (1 when absent); DicomError when it is not a sane positive count."""
    raw = ds.get("NumberOfFrames", 1)
    try:
        n = int(raw if raw not in (None, "") else 1)
    except (TypeError, ValueError):
        raise DicomError(UNSUPPORTED_PIXELS, "NumberOfFrames %r is not a number" % (raw,))
    if n < 1:
        raise DicomError(UNSUPPORTED_PIXELS, "NumberOfFrames is %d" % n)
    if n > MAX_FRAMES:
        raise DicomError(TOO_MANY_FRAMES, "%d frames exceeds the limit of %d" % (n, MAX_FRAMES))
    return n


def check_header(ds: Any, max_pixels: int) -> Tuple[int, int, int]:
    """Validate what decoding needs before any pixel is touched; returns (rows, columns, frames)."""
    sop = str(ds.get("SOPClassUID", "") or "")
    if not sop and not transfer_syntax(ds):
        raise DicomError(NOT_DICOM, "no file meta information and no SOP class: not a DICOM data set")
    if sop not in SOP_CLASSES:
        raise DicomError(UNSUPPORTED_SOP_CLASS, "SOP class %s is not a photograph this appliance reads (accepted: "
                         "ophthalmic photography, VL photographic, secondary capture)" % (sop or "(missing)"))
    ts = transfer_syntax(ds)
    if ts not in TRANSFER_SYNTAXES:
        raise DicomError(UNSUPPORTED_SYNTAX, "transfer syntax %s is not supported (accepted: %s)"
                         % (ts or "(missing)", ", ".join(sorted(TRANSFER_SYNTAXES.values()))))
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError) as exc:
        raise DicomError(UNSUPPORTED_PIXELS, "incomplete image pixel module: %s" % exc)
    if rows * cols > max_pixels:
        raise DicomError(TOO_MANY_PIXELS, "%dx%d = %d pixels exceeds the limit of %d (ingest.max_pixels)"
                         % (cols, rows, rows * cols, max_pixels))
    if min(rows, cols) < MIN_SIDE:
        raise DicomError(TOO_SMALL, "%dx%d is smaller than %d pixels on a side" % (cols, rows, MIN_SIDE))
    if spp not in (1, 3):
        raise DicomError(UNSUPPORTED_PIXELS, "SamplesPerPixel %d (expected 1 or 3)" % spp)
    if bits not in (8, 16):
        raise DicomError(UNSUPPORTED_PIXELS, "BitsAllocated %d (expected 8 or 16)" % bits)
    return rows, cols, number_of_frames(ds)


def _native_frame(ds: Any, frame: int, rows: int, cols: int, frames: int) -> np.ndarray:
    """One frame of uncompressed pixel data as an (rows, cols[, 3]) integer array."""
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.BitsAllocated)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    nbytes = rows * cols * spp * bits // 8
    data = ds.PixelData
    if len(data) < nbytes * frames:
        raise DicomError(TRUNCATED, "pixel data holds %d bytes, %d frame(s) of %dx%dx%d at %d bits need %d"
                         % (len(data), frames, cols, rows, spp, bits, nbytes * frames))
    order = "<" if ds.is_little_endian else ">"
    dtype = np.dtype("%s%s%d" % (order, "i" if signed else "u", bits // 8))
    flat = np.frombuffer(data, dtype=dtype, count=rows * cols * spp, offset=nbytes * frame)
    if spp == 1:
        return flat.reshape(rows, cols)
    if int(ds.get("PlanarConfiguration", 0) or 0) == 1:
        return np.ascontiguousarray(flat.reshape(3, rows, cols).transpose(1, 2, 0))
    return flat.reshape(rows, cols, 3)


def _encapsulated_frame(ds: Any, frame: int, frames: int) -> bytes:
    """The compressed bytes of one frame (fragments joined)."""
    from pydicom.encaps import generate_pixel_data_frame

    try:
        for index, data in enumerate(generate_pixel_data_frame(ds.PixelData, frames)):
            if index == frame:
                return data
    except Exception as exc:  # malformed item tags, offsets past the end, ...
        raise DicomError(TRUNCATED, "cannot split the encapsulated pixel data: %s" % exc)
    raise DicomError(TRUNCATED, "encapsulated pixel data has fewer than %d frames" % (frame + 1))


def _pillow_frame(data: bytes, rows: int, cols: int, max_pixels: int) -> Tuple[np.ndarray, str]:
    """Decode one JPEG / JPEG 2000 frame with Pillow; returns the array and Pillow's mode."""
    try:
        img = Image.open(io.BytesIO(data), formats=["JPEG", "JPEG2000"])
        w, h = img.size
        if w * h > max_pixels:
            raise DicomError(TOO_MANY_PIXELS, "the frame's codestream says %dx%d" % (w, h))
        if (w, h) != (cols, rows):
            raise DicomError(BAD_FRAME, "frame is %dx%d, the header says %dx%d" % (w, h, cols, rows))
        img.load()
    except DicomError:
        raise
    except Image.DecompressionBombError as exc:
        raise DicomError(TOO_MANY_PIXELS, str(exc))
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, MemoryError, Image.UnidentifiedImageError) as exc:
        raise DicomError(TRUNCATED, "cannot decode the compressed frame: %s" % exc)
    mode = img.mode
    if mode in ("RGB", "L"):
        return np.asarray(img), mode
    if mode.startswith("I;16") or mode == "I":
        return np.asarray(img), mode
    if mode == "YCbCr":  # a JPEG decoded without colour conversion: convert here
        return np.asarray(img.convert("RGB")), mode
    try:
        return np.asarray(img.convert("RGB")), mode
    except (OSError, ValueError) as exc:
        raise DicomError(UNSUPPORTED_PIXELS, "cannot convert the frame's mode %s: %s" % (mode, exc))


def _ybr_full_to_rgb(arr: np.ndarray) -> np.ndarray:
    """YBR_FULL (uncompressed, full range BT.601) to RGB."""
    y, cb, cr = (arr[..., i].astype(np.float32) for i in range(3))
    r = y + 1.402 * (cr - 128.0)
    g = y - 0.344136 * (cb - 128.0) - 0.714136 * (cr - 128.0)
    b = y + 1.772 * (cb - 128.0)
    return np.clip(np.stack([r, g, b], axis=-1) + 0.5, 0, 255).astype(np.uint8)


def _to_rgb8(arr: np.ndarray, ds: Any, photometric: str, compressed: bool, notes: List[str]) -> np.ndarray:
    """Any decoded frame (gray or colour, 8 to 16 bits) as RGB uint8."""
    if arr.dtype != np.uint8:
        stored = int(ds.get("BitsStored", 0) or 0) or (8 * arr.dtype.itemsize)
        work = arr.astype(np.float64)
        if arr.dtype.kind == "i":
            work = work - float(np.iinfo(arr.dtype).min) if stored >= 8 * arr.dtype.itemsize else work
            work = np.clip(work, 0, None)
        top = float(2 ** min(stored, 16) - 1)
        arr = np.clip(work * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        notes.append("scaled %d-bit DICOM pixels to 8 bits" % stored)
    if arr.ndim == 2:
        if photometric == "MONOCHROME1":
            arr = 255 - arr
            notes.append("inverted MONOCHROME1")
        notes.append("gray DICOM image repeated to RGB")
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 3:
        if not compressed and photometric.startswith("YBR_FULL"):
            notes.append("converted %s to RGB" % photometric)
            return _ybr_full_to_rgb(arr)
        return arr
    raise DicomError(UNSUPPORTED_PIXELS, "unexpected decoded frame shape %s" % (arr.shape,))


def _pixel_tag_in_file(path: os.PathLike) -> bool:
    """Whether the bytes of the (7FE0,0010) Pixel Data tag occur in the file (either byte order)."""
    try:
        with open(os.fspath(path), "rb") as fh:
            data = fh.read()
    except OSError:
        return False
    return b"\xe0\x7f\x10\x00" in data or b"\x7f\xe0\x00\x10" in data


def decode_dicom(path: os.PathLike, max_bytes: int, max_pixels: int, frame: int = 0) -> DecodedImage:
    """Validate and decode frame ``frame`` (0-based) of a DICOM file; DicomError with a reason otherwise."""
    ds = read_dataset(path, max_bytes)
    rows, cols, frames = check_header(ds, max_pixels)
    if "PixelData" not in ds:
        if _pixel_tag_in_file(path):   # pydicom drops an element cut off before its end (a warning only)
            raise DicomError(TRUNCATED, "the Pixel Data element ends before its delimiter: the file is cut short")
        raise DicomError(NO_PIXELS, "the data set has no Pixel Data element")
    if not 0 <= frame < frames:
        raise DicomError(BAD_FRAME, "frame %d asked for, the file has %d" % (frame, frames))
    ts = transfer_syntax(ds)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"):
        raise DicomError(UNSUPPORTED_PIXELS, "photometric interpretation %r is not supported" % photometric)
    notes: List[str] = []
    compressed = ts in PILLOW_SYNTAXES
    try:
        if compressed:
            arr, _mode = _pillow_frame(_encapsulated_frame(ds, frame, frames), rows, cols, max_pixels)
        else:
            if photometric == "YBR_FULL_422":
                raise DicomError(UNSUPPORTED_PIXELS, "uncompressed YBR_FULL_422 is not supported")
            arr = _native_frame(ds, frame, rows, cols, frames)
    except DicomError:
        raise
    except Exception as exc:  # damaged pixel data must never reach the daemon as anything else
        raise DicomError(TRUNCATED, "cannot read the pixel data: %s: %s" % (type(exc).__name__, exc))
    rgb = np.ascontiguousarray(_to_rgb8(arr, ds, photometric, compressed, notes))
    if frames > 1:
        notes.append("frame %d of %d" % (frame + 1, frames))
    fmt = "DICOM/" + TRANSFER_SYNTAXES[ts]
    return DecodedImage(rgb=rgb, format=fmt, mode=photometric, notes=notes)


def decode_input(path: os.PathLike, max_bytes: int, max_pixels: int, frame: Optional[int] = None,
                 min_side: MinSide = 0, max_scale: int = 8) -> DecodedImage:
    """Decode a capture whatever it is: a DICOM file (by content, or because a frame is asked for), always at
    full size, or a photo (a JPEG reduced while its shorter side keeps ``min_side``: see ``decode_image``)."""
    if frame is not None or has_dicom_preamble(path):
        return decode_dicom(path, max_bytes, max_pixels, frame or 0)
    return decode_image(path, max_bytes, max_pixels, min_side=min_side, max_scale=max_scale)
