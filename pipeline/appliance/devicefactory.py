"""Building the device from the configuration: bundle location, simulator options, ResilientDevice.

The only place in pipeline/ that knows how devices are constructed; the rest uses the
:class:`~vessel_seg.device.InferenceDevice` they are (start / submit / collect / infer / discard / close).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from vessel_seg.device import InferenceDevice, ModelBundle, ResilientDevice, load_bundle
from vessel_seg.pipeline.appliance.config import resolve_bundle_dir

log = logging.getLogger(__name__)


def sim_options_from_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """The simulator options (``device.sim``) as the device package expects them."""
    sim = dict(config["device"]["sim"])
    sim["faults"] = [dict(f) for f in sim.get("faults") or []]
    return sim


def load_model_bundle(config: Dict[str, Any], path: Optional[Path] = None) -> ModelBundle:
    """Load and validate the configured bundle (raises ``device.BundleError`` with what is wrong)."""
    bundle_dir = Path(path) if path is not None else resolve_bundle_dir(config)
    return load_bundle(str(bundle_dir))


def make_device(bundle: ModelBundle, config: Dict[str, Any], runtime: Optional[str] = None,
                sim_overrides: Optional[Dict[str, Any]] = None) -> InferenceDevice:
    """An (unopened) ``ResilientDevice`` for ``bundle`` with two buffer slots."""
    sim = sim_options_from_config(config)
    if sim_overrides:
        sim.update(sim_overrides)
    return ResilientDevice(bundle, runtime=runtime or config["device"]["runtime"], sim_options=sim, n_slots=2,
                           retries=config["device"]["retries"], device_id=config["device"]["device_id"])


def runtime_name_and_precision(device: InferenceDevice, config: Dict[str, Any],
                               sim_overrides: Optional[Dict[str, Any]] = None) -> Tuple[str, str]:
    """("acl"|"sim", "fp16"|"fp32") of an opened device: what result.json records."""
    info = dict(device.runtime_info or {})
    runtime = str(info.get("runtime") or "unknown")
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
