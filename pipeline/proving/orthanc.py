"""A real PACS for the proving ground and the tests: Debian's Orthanc (+ its DICOMweb plugin) on free ports.

``Orthanc(root)`` writes a temporary JSON configuration under ``root`` (storage there, HTTP and DICOM ports
picked free, AE title PACS, a Lua filter that fails the store of any instance whose PatientID is
``REJECT-ME``, as a PACS refusing an object would); ``start()`` runs ``Orthanc CONFIG`` and polls
``GET /system`` (ready in well under a second); ``stop()`` ends it by its pid. Arrivals are read with its REST
API (``POST /tools/find``).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

__all__ = ["Orthanc", "ORTHANC", "DICOMWEB_PLUGIN", "REJECTED_PATIENT", "free_port", "orthanc_missing"]

log = logging.getLogger(__name__)

ORTHANC = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if os.path.exists("/usr/sbin/Orthanc") else None)
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
REJECTED_PATIENT = "REJECT-ME"

# Orthanc 1.10 answers a C-STORE of an instance its filter *returns false* for with success (and STOW-RS with
# an empty FailedSOPSequence), so the filter raises an error instead: the store fails, as on a PACS that refuses.
_FILTER_LUA = """
function ReceivedInstanceFilter(dicom, origin, info)
   if dicom.PatientID == '%s' then
      error('refused by the test filter')
   end
   return true
end
""" % REJECTED_PATIENT


def orthanc_missing() -> Optional[str]:
    """Why Orthanc cannot run here, or None."""
    if ORTHANC is None:
        return "Orthanc is not installed (apt-get install -y orthanc orthanc-dicomweb; .ci/run does it as root)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Orthanc(object):
    """One Orthanc process on free ports (see the module docstring)."""

    def __init__(self, root: Path, **overrides: Any) -> None:
        self.root = Path(root)
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.proc = None  # type: Optional[subprocess.Popen]
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "filter.lua").write_text(_FILTER_LUA)
        config = {
            "Name": "vessel-seg-test", "StorageDirectory": str(self.root / "db"),
            "IndexDirectory": str(self.root / "db"), "HttpPort": self.http_port, "DicomPort": self.dicom_port,
            "DicomAet": "PACS", "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True, "DicomAlwaysAllowStore": True,
            "LuaScripts": [str(self.root / "filter.lua")],
            "Plugins": [DICOMWEB_PLUGIN] if os.path.exists(DICOMWEB_PLUGIN) else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "StableAge": 1, "HttpDescribeErrors": True,
        }
        config.update(overrides)
        self.config_path = self.root / "orthanc.json"
        self.config_path.write_text(json.dumps(config, indent=1))

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.http_port

    @property
    def dicomweb(self) -> str:
        return self.url + "/dicom-web"

    def start(self, timeout: float = 20.0) -> None:
        if ORTHANC is None:
            raise RuntimeError(orthanc_missing())
        with open(str(self.root / "orthanc.log"), "ab") as out:
            self.proc = subprocess.Popen([ORTHANC, str(self.config_path)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("Orthanc exited with %s: %s" % (self.proc.returncode, self.log_tail()))
            try:
                self.get("/system")
                # HTTP may answer before the DICOM server listens (seen on a loaded machine): wait for both
                with socket.create_connection(("127.0.0.1", self.dicom_port), timeout=0.5):
                    pass
                log.debug("Orthanc up on DICOM port %d, HTTP port %d", self.dicom_port, self.http_port)
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.02)
        raise RuntimeError("Orthanc did not answer /system and its DICOM port within %.0f s: %s"
                           % (timeout, self.log_tail()))

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop it by its pid: SIGKILL by default (a PACS that vanishes; a clean SIGTERM stop takes Orthanc
        about 3 s, and its storage is a throw-away folder anyway)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

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
