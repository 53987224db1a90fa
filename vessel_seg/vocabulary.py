"""The names the packages share, each defined once: capture states, stage names, result files, image
extensions, content hashes, result ids and UTC timestamps.

camera/, pipeline/ and web/ import them from here (device/ keeps to itself: it knows nothing of captures
or results). Standard library only, so anything may import it cheaply.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from datetime import datetime, timezone
from typing import Optional, Union

# ------------------------------------------------------------------------------------ capture states
#: A capture waiting for the pipeline / being processed / with a complete result / given up (with a reason).
QUEUED, PROCESSING, DONE, FAILED = "queued", "processing", "done", "failed"
#: Every state of a journal ``captures`` row, in life-cycle order.
CAPTURE_STATES = (QUEUED, PROCESSING, DONE, FAILED)
#: States of a capture that still has to be processed.
OPEN_STATES = (QUEUED, PROCESSING)

# ------------------------------------------------------------------------------------ stages
#: The host and device stages of one image, in pipeline order: the keys of result.json ``timings_ms``
#: (which adds ``total``) and of the per-stage latency metrics.
#: ``measure`` is the vessel morphometry (result.json ``morphometry``), timed after ``render``.
STAGE_NAMES = ("decode", "preprocess", "resize", "execute", "write_bin", "render", "measure")
TOTAL = "total"

# ------------------------------------------------------------------------------------ result files
RESULT_JSON = "result.json"
PROBABILITY_BIN = "probability.bin"
#: result.json ``files`` key -> file name of every file a complete result has. probability.bin (the
#: SaveFilePostProcess format: 512x512 float32 little-endian, nothing else) is written first, result.json last.
RESULT_FILES = {
    "probability_bin": PROBABILITY_BIN,
    "probability_png": "probability.png",
    "mask_png": "mask.png",
    "overlay_png": "overlay.png",
    "thumb": "thumb.jpg",
}
#: The field of view as found, on a small copy (at most 256 px a side, 0/255): what the original-size
#: images are cut with when they are produced on request.
FOV_PNG = "fov.png"
#: The model-space probability at a high-resolution working size (tiled executes; ``shared.tiling``), as an
#: 8-bit gray PNG (value / 255): what a tiled result's original-size images are made from. probability.bin
#: keeps its format (the same map reduced to 512x512).
PROBABILITY_HIRES_PNG = "probability_hires.png"
#: Files a result may have (listed in result.json when present): the input preview of the result page, the
#: small field-of-view mask and, for a tiled result, the working-size probability.
OPTIONAL_RESULT_FILES = {"input_jpg": "input.jpg", "fov_png": FOV_PNG, "probability_hires_png": PROBABILITY_HIRES_PNG}
#: Original-size images a result may produce on first request (from probability.bin, fov.png, result.json
#: and the input file) instead of when it is finished; result.json ``deferred`` lists the ones that are.
DEFERRABLE_RESULT_FILES = ("probability.png", "mask.png", "overlay.png", "input.jpg")
#: Every file name of a result folder that may be served (result.json included).
SERVABLE_RESULT_FILES = tuple(RESULT_FILES.values()) + tuple(OPTIONAL_RESULT_FILES.values()) + (RESULT_JSON,)

# ------------------------------------------------------------------------------------ inputs
#: File-name extensions of the photographs the appliance reads (the default of ``ingest.extensions``).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".ppm", ".webp")
#: The extension of DICOM files; a DICOM file may also have no extension at all (it is known by content).
DICOM_EXTENSION = ".dcm"
_DICOM_PREAMBLE = 128
_DICOM_MAGIC = b"DICM"

#: Who and what a capture shows (result.json ``identity``, the journal's ``identities`` table, the API):
#: from a DICOM header, a file-name pattern or a sidecar JSON.
IDENTITY_FIELDS = ("patient_id", "patient_name", "birth_date", "sex", "laterality", "acquired", "study_uid",
                   "series_uid", "sop_uid", "sop_class_uid", "accession", "manufacturer", "model")


#: DICOM SOP classes the appliance reads (UID -> name): fundus photographs (the receiver accepts only these).
DICOM_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.77.1.5.1": "Ophthalmic Photography 8 Bit Image",
    "1.2.840.10008.5.1.4.1.1.77.1.5.2": "Ophthalmic Photography 16 Bit Image",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic Image",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image",
}
#: Uncompressed DICOM transfer syntaxes decoded (UID -> name).
DICOM_NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
}
#: Compressed DICOM transfer syntaxes decoded by Pillow (UID -> name).
DICOM_COMPRESSED_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
}


def has_dicom_preamble(path: Union[str, "os.PathLike[str]"]) -> bool:
    """True when the file starts like a DICOM part 10 file: a 128-byte preamble, then ``DICM``."""
    try:
        with open(os.fspath(path), "rb") as fh:
            head = fh.read(_DICOM_PREAMBLE + len(_DICOM_MAGIC))
    except OSError:
        return False
    return len(head) == _DICOM_PREAMBLE + len(_DICOM_MAGIC) and head[_DICOM_PREAMBLE:] == _DICOM_MAGIC

# ------------------------------------------------------------------------------------ ids and hashes
#: A result id: the first 16 hex digits (lowercase) of the SHA-256 of the input file's bytes.
RESULT_ID_LENGTH = 16
_RESULT_ID_RE = re.compile(r"[0-9a-f]{16}")   # used with fullmatch: "$" would accept a trailing newline
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Union[str, "os.PathLike[str]"], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content, read in ``chunk``-byte pieces (constant memory)."""
    if chunk <= 0:
        raise ValueError("chunk must be a positive number of bytes, got %r" % (chunk,))
    h = hashlib.sha256()
    with open(os.fspath(path), "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def result_id(sha256: str) -> str:
    """The result id of content with this SHA-256."""
    return sha256[:RESULT_ID_LENGTH].lower()


def is_result_id(value: object) -> bool:
    """True for exactly 16 lowercase hex digits."""
    return isinstance(value, str) and _RESULT_ID_RE.fullmatch(value) is not None


def is_sha256(value: object) -> bool:
    """True for exactly 64 lowercase hex digits."""
    return isinstance(value, str) and _SHA256_RE.fullmatch(value) is not None


# ------------------------------------------------------------------------------------ timestamps
_UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_iso(ts: Optional[float] = None) -> str:
    """ISO-8601 UTC timestamp with a Z suffix, second resolution (now, or the epoch time ``ts``)."""
    return time.strftime(_UTC_FORMAT, time.gmtime(time.time() if ts is None else ts))


def utc_stamp(ts: Optional[float] = None) -> str:
    """A compact UTC stamp for file names: ``YYYYMMDDTHHMMSS``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() if ts is None else ts))


def normalise_utc_iso(text: str) -> str:
    """Any ISO-8601 timestamp as :func:`utc_iso` writes it (naive means UTC); ValueError when it is not one."""
    if not isinstance(text, str):
        raise ValueError("timestamp must be an ISO-8601 string, got %r" % (text,))
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).strftime(_UTC_FORMAT)
