"""Helpers of the export tests: the Orthanc harness (re-exported from the proving ground) and results to export.

``Orthanc`` is ``vessel_seg.pipeline.proving.orthanc.Orthanc``: Debian's Orthanc with a temporary JSON config
on free ports, storage in a temporary folder, stopped by its pid.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import cv2
import numpy as np

from vessel_seg.pipeline.proving.orthanc import (  # noqa: F401  (re-exported for the tests)
    DICOMWEB_PLUGIN,
    REJECTED_PATIENT,
    Orthanc,
    free_port,
    orthanc_missing,
)
from vessel_seg.pipeline.store.results import write_result


# --------------------------------------------------------------------------------------------- results
def fundus_rgb(width: int = 96, height: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = 160 + rng.randint(0, 40, (height, width))
    rgb[..., 1] = 60
    return rgb


def _png(arr: np.ndarray) -> bytes:
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def make_result(results_dir: Path, result_id: str, identity: Optional[Dict[str, Any]] = None,
                width: int = 96, height: int = 80, seed: int = 0) -> Dict[str, Any]:
    """A complete result folder (what the render stage writes) with a known mask; returns result.json."""
    rng = np.random.RandomState(seed)
    mask = (rng.rand(height, width) > 0.8).astype(np.uint8) * 255
    overlay = fundus_rgb(width, height, seed)
    overlay[mask > 0] = (0, 255, 200)
    thumb_ok, thumb = cv2.imencode(".jpg", overlay)
    files = {"probability.bin": bytes(512 * 512 * 4), "probability.png": _png(mask), "mask.png": _png(mask),
             "overlay.png": _png(overlay), "thumb.jpg": thumb.tobytes()}
    meta = {"id": result_id, "source": "%s.png" % result_id, "created": "2026-12-01T09:30:00.000000Z",
            "original_size": [width, height], "model": {"name": "vessel-unet", "version": "1.3.0"},
            "threshold": 0.6}
    if identity is not None:
        meta["identity"] = identity
    write_result(results_dir / result_id, files, meta)
    return meta


def export_config(orthanc: Optional[Orthanc] = None, protocol: str = "dimse", **extra: Any) -> Dict[str, Any]:
    cfg = {"enabled": True, "protocol": protocol, "host": "127.0.0.1",
           "port": orthanc.dicom_port if orthanc else free_port(), "called_ae_title": "PACS",
           "calling_ae_title": "VESSELSEG", "url": orthanc.dicomweb if orthanc else None,
           "objects": ["seg", "secondary_capture"]}
    cfg.update(extra)
    return cfg
