"""vessel-seg pipeline package: stages, scheduler, journal, result store, daemon and CLI.

Kept import-light on purpose: ``vessel-seg --help`` must not pull in numpy, OpenCV or Flask.
"""
from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

#: The repository (installation) root; relative paths in the configuration are resolved against it.
REPO_ROOT = Path(__file__).resolve().parent.parent
