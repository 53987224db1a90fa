"""vessel-seg device layer: NPU sessions over pyACL (real or simulated), model bundles, AIPP.

Public API (docs/ARCHITECTURE.md "Device API")::

    from vessel_seg.device import (open_session, DeviceSession, DeviceError, AclError, DeviceState, load_bundle,
                                   ModelBundle, InferenceDevice, ResilientDevice)

``InferenceDevice`` is what the pipeline uses of the NPU; ``ResilientDevice`` implements it over a session.
Code outside ``device/`` never imports ``acl``; the runtime module is chosen by ``device.runtime.load_runtime``.
``device/`` imports nothing from the rest of the appliance.
"""
from __future__ import annotations

from typing import Any

from .bundle import BundleError, ModelBundle, load_bundle, write_bundle
from .errors import AclError, DeviceError

__all__ = ["open_session", "DeviceSession", "TensorDesc", "DeviceError", "AclError", "DeviceState",
           "load_bundle", "write_bundle", "ModelBundle", "BundleError", "InferenceDevice", "ResilientDevice"]

_LAZY = {
    "open_session": "session", "DeviceSession": "session", "TensorDesc": "session",
    "DeviceState": "state", "ResilientDevice": "resilient", "InferenceDevice": "interface",
}


def __getattr__(name: str) -> Any:
    """Import session/resilient modules on first use (keeps ``import device`` light)."""
    if name in _LAZY:
        import importlib
        module = importlib.import_module("." + _LAZY[name], __name__)
        return getattr(module, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
