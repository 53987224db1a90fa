"""Access to what the app factory handed in: the daemon and the web config (stored on the app, not globals)."""
from __future__ import annotations

from typing import Any, Dict

from flask import current_app

EXTENSION_KEY = "vessel_seg"


class WebState(object):
    """What create_app stores in ``app.extensions["vessel_seg"]``."""

    def __init__(self, daemon: Any, config: Dict[str, Any]) -> None:
        from vessel_seg.web.pending import RecentUploads

        self.daemon = daemon
        self.config = config
        self.recent_uploads = RecentUploads()


def web_state() -> WebState:
    """The WebState of the current app."""
    return current_app.extensions[EXTENSION_KEY]


def get_daemon() -> Any:
    """The daemon object of the current app."""
    return web_state().daemon


def app_config() -> Dict[str, Any]:
    """The web config dict given to create_app (with defaults applied)."""
    return web_state().config
