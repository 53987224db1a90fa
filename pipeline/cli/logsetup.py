"""Logging configuration for the CLI and the daemon (stderr; no timestamps under systemd's journal)."""
from __future__ import annotations

import logging
import os
import sys
from typing import Optional


def setup_logging(level: Optional[str] = "INFO") -> None:
    """Configure the root logger once; later calls only change the level."""
    root = logging.getLogger()
    root.setLevel((level or "INFO").upper())
    if getattr(root, "_vessel_seg_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        fmt = "%(levelname)s %(name)s: %(message)s"          # journald adds the time
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s [%(threadName)s]: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root.handlers[:] = [handler]
    root._vessel_seg_configured = True  # type: ignore[attr-defined]
    logging.getLogger("watchdog").setLevel(logging.WARNING)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def set_level(level: str) -> None:
    """Change the root level (SIGHUP reload)."""
    logging.getLogger().setLevel(level.upper())
