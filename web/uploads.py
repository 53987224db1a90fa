"""Upload checks: image type by content (magic bytes + Pillow verify) and a safe file name.

The extension and the client's Content-Type are never trusted; the stored name gets the extension of the
format actually detected. Only the daemon writes the file (``daemon.submit_upload``), into its capture area.
"""
from __future__ import annotations

import io
import logging
import re
import warnings
from typing import NamedTuple, Optional

from PIL import Image
from werkzeug.utils import secure_filename

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 100
MAX_PIXELS = 100000000  # 100 MP: far above any fundus camera, below decompression-bomb territory


class UploadRejected(Exception):
    """An upload that is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ImageFormat(NamedTuple):
    """A supported input format: Pillow's name and the extension the stored file gets."""

    pillow: str
    extension: str


# magic prefix -> format. The same formats the daemon's ingest reads (config ingest.extensions): TIFF covers
# DRIVE's .tif files, BMP/PPM are what some camera SDKs emit. WebP is checked separately (RIFF container).
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
    """Return the image format announced by the leading magic bytes, or None."""
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _WEBP
    return None


def human_size(nbytes: int) -> str:
    """'50 MiB' for 52428800, '50 MB' for 50000000, '2000 bytes' below a megabyte."""
    if nbytes >= 1024 * 1024 and nbytes % (1024 * 1024) == 0:
        return "{} MiB".format(nbytes // (1024 * 1024))
    if nbytes >= 1000 * 1000:
        return "{:g} MB".format(round(nbytes / 1e6, 1))
    return "{} bytes".format(nbytes)


def verify_image(data: bytes) -> ImageFormat:
    """Check that ``data`` is a complete, decodable image of a supported format; return its format.

    Raises UploadRejected: 400 for empty data, 415 for an unsupported type, 422 for a damaged/implausible image.
    """
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
    if width < 1 or height < 1 or width * height > MAX_PIXELS:
        raise UploadRejected("image size {}x{} is not acceptable".format(width, height), 422)
    return fmt


def sanitize_filename(filename: Optional[str], fmt: ImageFormat) -> str:
    """A safe base name for the capture area, carrying the extension of the detected format.

    Strips directories (both separators), non-ASCII and shell-special characters, leading dots, and caps the length.
    """
    raw = (filename or "").replace("\\", "/").split("/")[-1]
    stem = raw.rsplit(".", 1)[0] if "." in raw else raw
    safe = secure_filename(stem)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", safe).lstrip("._-")
    safe = safe[: MAX_NAME_LENGTH - len(fmt.extension)]
    if not safe:
        safe = "upload"
    return safe + fmt.extension
