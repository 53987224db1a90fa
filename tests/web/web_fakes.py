"""A FakeDaemon implementing the contract the web relies on (docs/ARCHITECTURE.md, "Daemon state handed to
the web"), backed by the real pipeline.results.ResultStore over a temp data dir with real result folders.

Only the journal is faked (an in-memory table with the captures columns), so listings include queued,
processing and failed items. Images are generated with numpy + Pillow (no dataset needed).
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from PIL import Image

from vessel_seg.camera.synthetic import make_fundus
from vessel_seg.pipeline.appliance.config import default_config
from vessel_seg.pipeline.appliance.uploads import check_upload
from vessel_seg.pipeline.store.results import ResultStore, write_result
from vessel_seg.vocabulary import result_id, utc_iso


def encode(img: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    """Encode a PIL image to bytes in ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def fundus_like(width: int = 120, height: int = 100, seed: int = 0) -> Image.Image:
    """A synthetic fundus image (the one generator: camera.synthetic)."""
    return Image.fromarray(make_fundus(width=width, height=height, seed=seed)[0], "RGB")


def image_bytes(fmt: str = "PNG", seed: int = 0, width: int = 120, height: int = 100) -> bytes:
    """Encoded fundus-like image bytes (PNG, JPEG, TIFF, BMP)."""
    return encode(fundus_like(width, height, seed), fmt)


class FakeJournal(object):
    """In-memory captures table: get(id), list(offset, limit) newest first, counts()."""

    def __init__(self) -> None:
        self.rows = {}  # type: Dict[str, Dict[str, Any]]
        self._order = []  # type: List[str]
        self._lock = threading.Lock()

    def upsert(self, result_id: str, **fields: Any) -> None:
        with self._lock:
            row = self.rows.get(result_id)
            if row is None:
                row = {"id": result_id, "sha256": None, "source": None, "path": None, "state": "queued",
                       "reason": None, "attempts": 0, "created": utc_iso(), "updated": utc_iso()}
                self.rows[result_id] = row
                self._order.append(result_id)
            row.update(fields)
            row["updated"] = utc_iso()

    def get(self, result_id: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            row = self.rows.get(result_id)
            return dict(row) if row else None

    def list(self, offset: int, limit: int) -> List[Dict[str, Any]]:
        with self._lock:
            ids = list(reversed(self._order))[offset:offset + limit]
            return [dict(self.rows[i]) for i in ids]

    def counts(self) -> Dict[str, int]:
        with self._lock:
            out = {}  # type: Dict[str, int]
            for row in self.rows.values():
                out[row["state"]] = out.get(row["state"], 0) + 1
            return out


class FakeMetrics(object):
    """daemon.metrics: snapshot() returns whatever the test put in ``data``."""

    def __init__(self) -> None:
        self.data = {
            "counters": {"processed": 0, "failed": 0},
            "gauges": {},
            "histograms": {
                "execute": {"buckets": [10, 50, 100], "counts": [1, 2, 0], "sum": 95.0, "count": 4},
                "decode": {"buckets": [10, 50, 100], "counts": [3, 0, 0], "sum": 6.0, "count": 3},
            },
        }  # type: Dict[str, Any]

    def snapshot(self) -> Dict[str, Any]:
        return self.data


def default_status() -> Dict[str, Any]:
    """A healthy simulator status with every key of the contract."""
    return {
        "processed": 0, "failed": 0, "queued": 0,
        "runtime": "sim",
        "runtime_info": {"runtime": "sim", "soc": "Ascend310 (simulated)",
                         "warning": "Simulated ACL runtime: inference runs on the CPU."},
        "model": {"name": "vessel-unet", "version": "1.0.0"},
        "health": "ok", "health_reason": "",
        "device_state": "ready",
        "throughput_ipm": 12.5,
        "stage_latency_ms": {"decode": 3.2, "preprocess": 8.5, "resize": 1.1, "execute": 41.0,
                             "write_bin": 0.9, "render": 12.3},
        "last_hour": {"processed": 7, "failed": 1},
        "pipeline_state": "running", "paused_reason": None,
    }


class FakeDaemon(object):
    """Implements status(), results, submit_upload() and metrics like vessel_seg.pipeline.appliance.daemon.Daemon.

    With ``process_delay_s`` set, uploads are processed by a background thread (queued -> processing -> done)
    after that delay, writing a real result folder; otherwise tests drive states by hand.
    """

    def __init__(self, data_dir: os.PathLike, process_delay_s: Optional[float] = None) -> None:
        self.data_dir = Path(data_dir)
        self.capture_dir = self.data_dir / "capture"
        self.capture_dir.mkdir(parents=True, exist_ok=True)
        self.journal = FakeJournal()
        self.results = ResultStore(self.data_dir, journal=self.journal)
        self.metrics = FakeMetrics()
        self.state = default_status()
        self.uploads = []  # type: List[Dict[str, Any]]
        self.upload_error = None  # type: Optional[Exception]
        self.process_delay_s = process_delay_s
        self.journal_uploads = True

    def status(self) -> Dict[str, Any]:
        return dict(self.state)

    def submit_upload(self, filename: str, data: bytes) -> str:
        """Validates like the daemon (the same check), then stores the file and records the upload."""
        if self.upload_error is not None:
            raise self.upload_error
        ingest = default_config()["ingest"]
        filename, _fmt = check_upload(filename, data, max_bytes=ingest["max_bytes"], max_pixels=ingest["max_pixels"])
        sha = hashlib.sha256(data).hexdigest()
        rid = result_id(sha)
        tmp = self.capture_dir / (".{}.part".format(rid))
        tmp.write_bytes(data)
        final = self.capture_dir / filename
        os.replace(str(tmp), str(final))
        self.uploads.append({"filename": filename, "data": data, "id": rid, "path": final})
        if self.journal_uploads:
            self.journal.upsert(rid, sha256=sha, source=filename, path=str(final), state="queued")
        if self.process_delay_s is not None:
            threading.Thread(target=self._process_later, args=(rid, filename, data), daemon=True).start()
        return rid

    def _process_later(self, rid: str, filename: str, data: bytes) -> None:
        time.sleep(self.process_delay_s or 0)
        self.journal.upsert(rid, state="processing")
        time.sleep(self.process_delay_s or 0)
        img = Image.open(io.BytesIO(data)).convert("RGB")
        add_result(self, rid=rid, source=filename, image=img)

    # -- test helpers
    def add_failed(self, rid: str, source: str, reason: str) -> None:
        self.journal.upsert(rid, source=source, state="failed", reason=reason)


def add_result(daemon: FakeDaemon, rid: Optional[str] = None, source: str = "img001.jpg",
               image: Optional[Image.Image] = None, seed: int = 0, extra_meta: Optional[Dict[str, Any]] = None) -> str:
    """Write a complete result folder (real files, written by pipeline.results.write_result) and mark it done."""
    image = image or fundus_like(seed=seed)
    rgb = np.asarray(image.convert("RGB"))
    if rid is None:
        rid = result_id(hashlib.sha256(rgb.tobytes() + source.encode()).hexdigest())
    h, w = rgb.shape[:2]
    prob512 = np.linspace(0, 1, 512 * 512, dtype=np.float32).reshape(512, 512)
    prob_full = (rgb[..., 1].astype(np.float32) / 255.0)
    mask = (prob_full < 0.2) & (rgb[..., 0] > 0)
    overlay = rgb.copy()
    overlay[mask] = (0, 255, 200)
    thumb = Image.fromarray(overlay)
    thumb.thumbnail((256, 256))
    files = {
        "probability.bin": prob512.astype("<f4").tobytes(),
        "probability.png": encode(Image.fromarray((prob_full * 255).astype(np.uint8), "L"), "PNG"),
        "mask.png": encode(Image.fromarray(mask.astype(np.uint8) * 255, "L"), "PNG"),
        "overlay.png": encode(Image.fromarray(overlay), "PNG"),
        "thumb.jpg": encode(thumb, "JPEG"),
    }
    meta = {"id": rid, "source": source, "sha256": rid + "0" * 48, "created": utc_iso(),
            "original_size": [w, h], "model_input_size": [512, 512],
            "model": {"name": "vessel-unet", "version": "1.0.0"}, "runtime": "sim", "precision": "fp32",
            "threshold": 0.5, "vessel_density_fov": 0.123, "fov_fraction": 0.7,
            "timings_ms": {"decode": 1.5, "preprocess": 4.0, "resize": 0.5, "execute": 30.0, "write_bin": 0.7,
                           "render": 6.0, "total": 42.7}}
    meta.update(extra_meta or {})
    daemon.journal.upsert(rid, source=source, sha256=meta["sha256"], state="processing")
    write_result(daemon.results.result_dir(rid), files, meta)
    daemon.journal.upsert(rid, state="done")
    return rid
