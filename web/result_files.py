"""Which result files the web may serve, and how: a validated id plus a fixed allow-list of names.

No request path ever reaches the filesystem: the route only accepts an id matching ``^[0-9a-f]{16}$``
(fullmatch) and a name from ``ALLOWED_FILES``; the path itself comes from ``ResultStore.file_path(id, name)``.
"""
from __future__ import annotations

import re
from typing import Dict, NamedTuple

RESULT_ID_RE = re.compile(r"[0-9a-f]{16}")  # used with fullmatch (a "$" would accept a trailing newline)


class FileKind(NamedTuple):
    """How one allow-listed result file is served and labelled."""

    mimetype: str
    label: str
    inline: bool  # shown in the browser (images, JSON) rather than only downloaded


ALLOWED_FILES = {
    "input.jpg": FileKind("image/jpeg", "Input preview (JPEG)", True),
    "overlay.png": FileKind("image/png", "Overlay", True),
    "probability.png": FileKind("image/png", "Probability map (8-bit)", True),
    "mask.png": FileKind("image/png", "Binary mask", True),
    "thumb.jpg": FileKind("image/jpeg", "Thumbnail", True),
    "result.json": FileKind("application/json", "Result metadata", True),
    "probability.bin": FileKind("application/octet-stream", "Probability (float32 LE, 512x512 raw)", False),
}  # type: Dict[str, FileKind]

# Order of the download list on the result page.
DOWNLOAD_ORDER = ("probability.bin", "probability.png", "mask.png", "overlay.png", "input.jpg", "thumb.jpg",
                  "result.json")


def is_valid_result_id(value: str) -> bool:
    """True for a result id of exactly 16 lowercase hex digits."""
    return isinstance(value, str) and RESULT_ID_RE.fullmatch(value) is not None


def is_allowed_file(name: str) -> bool:
    """True only for names in the fixed allow-list (exact match, no paths)."""
    return isinstance(name, str) and name in ALLOWED_FILES
