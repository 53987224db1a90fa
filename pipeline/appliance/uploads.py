"""Uploads from the status page: the one validator (type by content, complete image, size, safe name) and
the atomic, never-overwriting publication into capture/.

The client's file name and Content-Type are never trusted: the stored name is a sanitised stem plus the
extension of the format actually detected. Once published, an upload is a capture like any other (same
journal, dedupe, quarantine and recovery).
"""
from __future__ import annotations

import io
import logging
import os
import re
import threading
import unicodedata
import uuid
import warnings
from pathlib import Path
from typing import NamedTuple, Optional, Tuple

from vessel_seg.pipeline.store.atomic import atomic_write_bytes, fsync_dir

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 100


class UploadRejected(ValueError):
    """An upload that is refused; ``status`` is the HTTP status that says why (400, 413, 415, 422)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ImageFormat(NamedTuple):
    """A supported input format: Pillow's name and the extension the stored file gets."""

    pillow: str
    extension: str


# magic prefix -> format: the formats of the default ``ingest.extensions``. TIFF covers DRIVE's .tif files,
# BMP/PPM are what some camera SDKs emit. WebP is checked separately (RIFF container).
_MAGIC = (
    (b"\xff\xd8\xff", ImageFormat("JPEG", ".jpg")),
    (b"\x89PNG\r\n\x1a\n", ImageFormat("PNG", ".png")),
    (b"II*\x00", ImageFormat("TIFF", ".tif")),
    (b"MM\x00*", ImageFormat("TIFF", ".tif")),
    (b"BM", ImageFormat("BMP", ".bmp")),
    (b"P6", ImageFormat("PPM", ".ppm")),
    (b"P5", ImageFormat("PPM", ".ppm")),
)
_WEBP = ImageFormat("WEBP", ".webp")

SUPPORTED_DESCRIPTION = "JPEG, PNG, TIFF, BMP, PPM or WebP"


def sniff_format(data: bytes) -> Optional[ImageFormat]:
    """The image format announced by the leading magic bytes, or None."""
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _WEBP
    return None


def verify_image(data: bytes, max_pixels: int) -> ImageFormat:
    """Check that ``data`` is a complete, decodable image of a supported format of at most ``max_pixels``.

    Raises UploadRejected: 400 for empty data, 415 for an unsupported type, 422 for a damaged or oversized image.
    """
    from PIL import Image

    if not data:
        raise UploadRejected("the uploaded file is empty", 400)
    fmt = sniff_format(data)
    if fmt is None:
        raise UploadRejected("unsupported file type: expected a {} image".format(SUPPORTED_DESCRIPTION), 415)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.format != fmt.pillow:
                    raise UploadRejected("file content is not a valid {} image".format(fmt.pillow), 422)
                width, height = img.size
                if width < 1 or height < 1 or width * height > max_pixels:
                    raise UploadRejected("image size {}x{} is not acceptable (at most {} pixels)".format(
                        width, height, max_pixels), 422)
                img.verify()
            # verify() does not decode pixel data; load() catches truncated files.
            with Image.open(io.BytesIO(data)) as img:
                img.load()
    except UploadRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadRejected("image has too many pixels", 422)
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError...) for bad files
        log.info("upload failed image verification: %s", exc)
        raise UploadRejected("file is not a valid {} image (damaged or truncated)".format(fmt.pillow), 422)
    return fmt


def upload_name(filename: Optional[str], fmt: ImageFormat) -> str:
    """A safe base name for capture/, carrying the extension of the detected format.

    Strips directories (both separators), accents and non-ASCII, shell-special characters and leading dots
    or dashes, and caps the length.
    """
    raw = (filename or "").replace("\\", "/").split("/")[-1]
    stem = raw.rsplit(".", 1)[0] if "." in raw else raw
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "", "_".join(ascii_stem.split())).lstrip("._-")
    safe = safe[:MAX_NAME_LENGTH - len(fmt.extension)] or "upload"
    return safe + fmt.extension


def check_upload(filename: Optional[str], data: bytes, max_bytes: int, max_pixels: int) -> Tuple[str, ImageFormat]:
    """Everything an upload must pass: (the name to store it under, its format), or UploadRejected."""
    if len(data) > max_bytes:
        raise UploadRejected("the upload has %d bytes; the limit is %d" % (len(data), max_bytes), 413)
    fmt = verify_image(data, max_pixels)
    return upload_name(filename, fmt), fmt


class UploadPublisher(object):
    """Publishes validated uploads into the capture folder, atomically and without overwriting anything."""

    def __init__(self, capture: Path) -> None:
        self.capture = Path(capture)
        self._lock = threading.Lock()

    def publish(self, name: str, rid: str, data: bytes) -> Path:
        """Write ``data`` into capture/ under ``name``, or ``<stem>__<rid8>[-n]<ext>`` when that is taken;
        never overwrites a file (two simultaneous uploads with one name both survive).

        The data is first written durably to a hidden staging file (ignored by the watcher), then published
        with ``os.link``, which fails instead of replacing an existing name. Where the file system has no
        hard links (FAT), a check-then-rename under a lock is the fallback (exclusive among uploads).
        """
        capture = self.capture
        capture.mkdir(parents=True, exist_ok=True)
        staged = atomic_write_bytes(capture / (".upload-%s-%s.staged" % (rid, uuid.uuid4().hex[:12])), data,
                                    sync_dir=False)
        stem, ext = os.path.splitext(name)
        use_link = True
        n = 0
        try:
            while True:
                if n == 0:
                    target = capture / name
                elif n == 1:
                    target = capture / ("%s__%s%s" % (stem, rid[:8], ext))
                else:
                    target = capture / ("%s__%s-%d%s" % (stem, rid[:8], n, ext))
                n += 1
                if use_link:
                    try:
                        os.link(str(staged), str(target))
                        break
                    except FileExistsError:
                        continue
                    except OSError as exc:
                        log.info("no hard links in %s (%s); publishing uploads by rename", capture, exc)
                        use_link = False
                with self._lock:
                    if os.path.lexists(str(target)):
                        continue
                    os.rename(str(staged), str(target))
                    break
        finally:
            try:
                os.unlink(str(staged))
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove the staging file %s: %s", staged, exc)
        fsync_dir(capture)
        return target
