"""Runtime selection: the real pyACL module or the simulator, imported lazily.

``load_runtime("auto")`` uses the real ``acl`` when ``import acl`` works, else the simulator, logging a WARNING and
returning the warning text (the status page shows it).  Only the chosen runtime's module is imported.
"""
from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any, Dict, Optional, Tuple

from .bundle import ModelBundle
from .errors import DeviceError

log = logging.getLogger(__name__)

__all__ = ["load_runtime", "model_path", "RUNTIMES"]

RUNTIMES = ("auto", "acl", "sim")


def _load_real() -> ModuleType:
    backend = importlib.import_module(".acl_backend", __package__)
    return backend.acl


def _load_sim(sim_options: Optional[Dict[str, Any]]) -> ModuleType:
    sim = importlib.import_module(".sim", __package__)
    if sim_options is not None:
        sim.control.configure(sim_options)
    return sim.acl


def load_runtime(name: str = "auto", sim_options: Optional[Dict[str, Any]] = None
                 ) -> Tuple[ModuleType, str, Optional[str]]:
    """Return ``(acl_module, runtime_name, warning)``; ``runtime_name`` is ``"acl"`` or ``"sim"``.

    ``sim_options`` (when not None) configures the simulator; it is ignored (with a log line) on the real runtime.
    """
    if name not in RUNTIMES:
        raise DeviceError("unknown runtime %r (choose auto, acl or sim)" % (name,))
    if name == "sim":
        return _load_sim(sim_options), "sim", None
    try:
        module = _load_real()
    except ImportError as exc:
        if name == "acl":
            raise DeviceError("runtime 'acl' requested but pyACL cannot be imported (%s): install CANN on the "
                              "board and source its set_env.sh" % exc)
        warning = ("pyACL not available (%s): using the SIMULATED ACL runtime; inference runs on the CPU, "
                   "not the NPU" % exc)
        log.warning(warning)
        return _load_sim(sim_options), "sim", warning
    if sim_options:
        log.info("sim_options ignored: the real ACL runtime is in use")
    return module, "acl", None


def model_path(bundle: ModelBundle, runtime_name: str) -> str:
    """What ``acl.mdl.load_from_file`` gets: model.om on the real runtime, model.onnx on the simulator."""
    if runtime_name == "acl":
        backend = importlib.import_module(".acl_backend", __package__)
        return backend.model_path(bundle)
    return bundle.onnx_path


def runtime_details(module: ModuleType, runtime_name: str) -> Dict[str, Any]:
    """Runtime-specific extras for ``runtime_info``."""
    if runtime_name == "acl":
        backend = importlib.import_module(".acl_backend", __package__)
        return backend.runtime_details(module)
    sim = importlib.import_module(".sim", __package__)
    opts = sim.control.options()
    return {"soc": "%s (simulated)" % module.get_soc_name(), "precision": opts["precision"],
            "compute": opts["compute"], "device_time_ms": opts["device_time_ms"]}
