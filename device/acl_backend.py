"""Real pyACL specifics: importing ``acl`` and locating the bundle's ``model.om``.

The session code itself is runtime-agnostic (:mod:`device.session` takes the ``acl`` module object); this module is
imported only when the real runtime is selected, so machines without CANN never touch it.
"""
from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Any, Dict

from .bundle import ModelBundle
from .errors import DeviceError

log = logging.getLogger(__name__)

import acl  # noqa: E402  (ImportError here means: no CANN runtime; device.runtime handles it)

__all__ = ["acl", "model_path", "runtime_details"]


def model_path(bundle: ModelBundle) -> str:
    """Path of model.om, or DeviceError telling how to produce it."""
    if not os.path.isfile(bundle.om_path):
        raise DeviceError("%s is missing: run convert_om.sh with ATC on a machine with the CANN toolkit "
                          "(the real runtime loads .om files, not ONNX)" % bundle.om_path)
    return bundle.om_path


def runtime_details(module: ModuleType) -> Dict[str, Any]:
    """CANN details for the status page (best effort, never raises)."""
    info: Dict[str, Any] = {}
    try:
        info["soc"] = module.get_soc_name()
    except Exception as exc:  # pyACL raises nothing documented here; keep the status page alive regardless
        log.debug("get_soc_name failed: %s", exc)
    home = os.environ.get("ASCEND_TOOLKIT_HOME") or os.environ.get("ASCEND_HOME_PATH")
    if home:
        info["cann_home"] = home
        version_file = os.path.join(home, "version.cfg")
        if os.path.isfile(version_file):
            try:
                with open(version_file, "r", encoding="utf-8", errors="replace") as fh:
                    info["cann_version_cfg"] = fh.read(200).strip()
            except OSError:
                pass
    return info
