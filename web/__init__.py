"""vessel-seg web package: the status page and JSON API (Flask app factory, served by waitress)."""
from __future__ import annotations

from vessel_seg.web.app import create_app
from vessel_seg.web.server import serve

__all__ = ["create_app", "serve"]
