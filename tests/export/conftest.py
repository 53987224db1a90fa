"""A real PACS for the export tests, and results to export.

``orthanc`` is the proving ground's Orthanc harness (``vessel_seg.pipeline.proving.orthanc``: Debian's
Orthanc with a temporary JSON config on free ports, storage in tmp_path, stopped by its pid). Tests are
skipped, with the reason, when Orthanc is not installed (``.ci/run`` installs it with apt-get as root).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Optional

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pipeline"))  # pipefakes (tiny bundle)

from vessel_seg.pipeline.proving.orthanc import (  # noqa: E402,F401  (re-exported for the tests)
    DICOMWEB_PLUGIN,
    REJECTED_PATIENT,
    Orthanc,
    free_port,
    orthanc_missing,
)
from vessel_seg.pipeline.store.results import write_result  # noqa: E402


def _need_orthanc() -> None:
    why = orthanc_missing()
    if why:
        pytest.skip(why)


@pytest.fixture
def orthanc_factory(tmp_path):
    """``make(start=True, **config overrides)`` -> a started (or not yet started) Orthanc; all stopped at the end."""
    _need_orthanc()
    servers = []

    def make(start: bool = True, **overrides: Any) -> Orthanc:
        server = Orthanc(tmp_path / ("orthanc%d" % len(servers)), **overrides)
        servers.append(server)
        if start:
            server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def orthanc(orthanc_factory):
    return orthanc_factory()


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
