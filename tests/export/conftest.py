"""A real PACS for the export tests: Debian's Orthanc (+ its DICOMweb plugin) on free ports, and results.

``orthanc`` starts ``Orthanc CONFIG`` with a temporary JSON configuration (storage in tmp_path, HTTP and
DICOM ports picked free, AE title PACS, a Lua filter that refuses any instance whose PatientID is
``REJECT-ME``), waits for ``GET /system`` and stops it by its pid. Tests are skipped, with the reason, when
Orthanc is not installed (``.ci/run`` installs it with apt-get when it runs as root).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pipeline"))  # pipefakes (tiny bundle)

from vessel_seg.pipeline.store.results import write_result  # noqa: E402

ORTHANC = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if os.path.exists("/usr/sbin/Orthanc") else None)
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
REJECTED_PATIENT = "REJECT-ME"

_FILTER_LUA = """
function ReceivedInstanceFilter(dicom, origin, info)
   if dicom.PatientID == '%s' then
      error('refused by the test filter')
   end
   return true
end
""" % REJECTED_PATIENT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Orthanc(object):
    """One Orthanc process on free ports (see the module docstring)."""

    def __init__(self, root: Path, **overrides: Any) -> None:
        self.root = root
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.proc = None  # type: Optional[subprocess.Popen]
        root.mkdir(parents=True, exist_ok=True)
        (root / "filter.lua").write_text(_FILTER_LUA)
        config = {
            "Name": "vessel-seg-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": "PACS",
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": True, "LuaScripts": [str(root / "filter.lua")],
            "Plugins": [DICOMWEB_PLUGIN] if os.path.exists(DICOMWEB_PLUGIN) else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "StableAge": 1, "HttpDescribeErrors": True,
        }
        config.update(overrides)
        self.config_path = root / "orthanc.json"
        self.config_path.write_text(json.dumps(config, indent=1))

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.http_port

    @property
    def dicomweb(self) -> str:
        return self.url + "/dicom-web"

    def start(self, timeout: float = 20.0) -> None:
        log = open(str(self.root / "orthanc.log"), "ab")
        self.proc = subprocess.Popen([ORTHANC, str(self.config_path)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("Orthanc exited with %s: %s" % (self.proc.returncode, self.log_tail()))
            try:
                self.get("/system")
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.02)
        raise RuntimeError("Orthanc did not answer /system within %.0f s: %s" % (timeout, self.log_tail()))

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop it by its pid: SIGKILL by default (a PACS that vanishes; a clean SIGTERM stop takes Orthanc
        about 3 s, and its storage is thrown away with tmp_path anyway)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def log_tail(self) -> str:
        try:
            return (self.root / "orthanc.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read().decode("utf-8"))

    def post(self, path: str, body: Any) -> Any:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read().decode("utf-8"))

    def find_instances(self, **query: str) -> List[Dict[str, Any]]:
        """``POST /tools/find`` at instance level, expanded (MainDicomTags, ParentSeries...)."""
        return self.post("/tools/find", {"Level": "Instance", "Query": query or {}, "Expand": True})

    def tags(self, orthanc_id: str) -> Dict[str, Any]:
        return self.get("/instances/%s/simplified-tags" % orthanc_id)


def _need_orthanc() -> None:
    if ORTHANC is None:
        pytest.skip("Orthanc is not installed (apt-get install -y orthanc orthanc-dicomweb; .ci/run does it as root)")


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
