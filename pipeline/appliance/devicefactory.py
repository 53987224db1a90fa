"""Building the device from the configuration: bundle location, simulator options, ResilientDevice.

The only place in pipeline/ that knows how ``device`` objects are constructed; the rest uses the
session-like API (write_input / execute_async / wait / read_output / infer).
"""
from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from vessel_seg.pipeline.appliance.config import resolve_bundle_dir

log = logging.getLogger(__name__)


def sim_options_from_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The simulator options (``device.sim``) as the device package expects them."""
    sim = dict(config["device"]["sim"])
    sim["faults"] = [dict(f) for f in sim.get("faults") or []]
    return sim


def load_model_bundle(config: Dict[str, Any], path: Optional[Path] = None) -> Any:
    """Load and validate the configured bundle (raises ``device.BundleError`` with what is wrong)."""
    from vessel_seg.device import load_bundle

    bundle_dir = Path(path) if path is not None else resolve_bundle_dir(config)
    return load_bundle(str(bundle_dir))


def make_device(bundle: Any, config: Dict[str, Any], runtime: Optional[str] = None,
                sim_overrides: Optional[Dict[str, Any]] = None) -> Any:
    """An (unopened) ``ResilientDevice`` for ``bundle`` with two buffer slots."""
    from vessel_seg.device.resilient import ResilientDevice

    sim = sim_options_from_config(config)
    if sim_overrides:
        sim.update(sim_overrides)
    kwargs: Dict[str, Any] = {"runtime": runtime or config["device"]["runtime"], "sim_options": sim, "n_slots": 2}
    params = inspect.signature(ResilientDevice.__init__).parameters
    if "retries" in params:
        kwargs["retries"] = config["device"]["retries"]
    if "device_id" in params:
        kwargs["device_id"] = config["device"]["device_id"]
    return ResilientDevice(bundle, **kwargs)


def runtime_name_and_precision(device: Any, config: Dict[str, Any],
                               sim_overrides: Optional[Dict[str, Any]] = None) -> Tuple[str, str]:
    """("acl"|"sim", "fp16"|"fp32") of an opened device: what result.json records."""
    info = dict(getattr(device, "runtime_info", None) or {})
    runtime = str(info.get("runtime") or getattr(device, "runtime_name", "") or "unknown")
    precision = info.get("precision")
    if not precision:
        if runtime == "sim":
            sim = sim_options_from_config(config)
            if sim_overrides:
                sim.update(sim_overrides)
            precision = sim.get("precision", "fp32")
        else:
            precision = "fp16"  # ATC builds Ascend 310 models with FP16 compute by default
    return runtime, str(precision)
