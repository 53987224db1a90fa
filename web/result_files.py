"""Which result files the web may serve, and how: a validated id plus a fixed allow-list of names.

No request path ever reaches the filesystem: the route only accepts an id matching ``^[0-9a-f]{16}$``
(fullmatch) and a name from ``ALLOWED_FILES``; the path itself comes from ``ResultStore.file_path(id, name)``.
"""
from __future__ import annotations

from typing import NamedTuple

from vessel_seg.vocabulary import PROBABILITY_BIN, PROBABILITY_HIRES_PNG, RESULT_JSON, SERVABLE_RESULT_FILES


class FileKind(NamedTuple):
    """How one allow-listed result file is served and labelled."""

    mimetype: str
    label: str
    inline: bool  # shown in the browser (images, JSON) rather than only downloaded


_KINDS = {
    "input.jpg": FileKind("image/jpeg", "Input preview (JPEG)", True),
    "overlay.png": FileKind("image/png", "Overlay", True),
    "probability.png": FileKind("image/png", "Probability map (8-bit)", True),
    "mask.png": FileKind("image/png", "Binary mask", True),
    "thumb.jpg": FileKind("image/jpeg", "Thumbnail", True),
    "fov.png": FileKind("image/png", "Field of view (small mask)", True),
    RESULT_JSON: FileKind("application/json", "Result metadata", True),
    PROBABILITY_BIN: FileKind("application/octet-stream", "Probability (float32 LE, 512x512 raw)", False),
    PROBABILITY_HIRES_PNG: FileKind("image/png", "Probability at the working size (8-bit, FOV box)", True),
}  # type: Dict[str, FileKind]
#: Every result file the store serves, with how it is served (a file without a kind is a bug: KeyError here).
ALLOWED_FILES = {name: _KINDS[name] for name in SERVABLE_RESULT_FILES}  # type: Dict[str, FileKind]

# Order of the download list on the result page.
DOWNLOAD_ORDER = (PROBABILITY_BIN, PROBABILITY_HIRES_PNG, "probability.png", "mask.png", "overlay.png", "input.jpg",
                  "thumb.jpg", RESULT_JSON)


def is_allowed_file(name: str) -> bool:
    """True only for names in the fixed allow-list (exact match, no paths)."""
    return isinstance(name, str) and name in ALLOWED_FILES
