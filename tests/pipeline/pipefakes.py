"""Small fakes and fixtures shared by the pipeline unit tests (no board, no real model needed)."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from pipeline.preprocess import PreprocessParams
from pipeline.stages import ModelInfo, StageSettings, Stages, WorkItem


def fundus_like(width: int = 200, height: int = 180, seed: int = 0) -> np.ndarray:
    """A cheap fundus-looking RGB image: black surround, orange disc, a few dark curved vessels."""
    rng = np.random.RandomState(seed)
    img = np.zeros((height, width, 3), np.uint8)
    cx, cy, r = width // 2, height // 2, int(min(width, height) * 0.45)
    cv2.circle(img, (cx, cy), r, (200, 90, 40), -1)
    for i in range(5):
        pts = np.array([[cx + int(r * 0.8 * np.cos(a)), cy + int(r * 0.8 * np.sin(a))]
                        for a in np.linspace(i, i + 2.0, 12)], np.int32)
        cv2.polylines(img, [pts], False, (90, 20, 10), 2)
    noise = rng.randint(0, 6, size=img.shape).astype(np.uint8)
    return cv2.add(img, noise)


def write_image(path: Path, rgb: np.ndarray) -> Path:
    """Write RGB as an image file (format from the extension)."""
    ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok, path
    return path


def make_stages(results_dir: Path, nv12: bool = True, **settings: Any) -> Stages:
    shape = (768, 512) if nv12 else (1, 3, 512, 512)
    model = ModelInfo(name="fake-net", version="0.0.1", nv12=nv12, host_input_shape=shape,
                      params=PreprocessParams(), threshold=0.5, runtime="fake", precision="fp32")
    return Stages(model, StageSettings(**settings), results_dir)


def item_for(path: Path, ident: Optional[str] = None) -> WorkItem:
    import hashlib

    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return WorkItem(id=ident or sha[:16], sha256=sha, source=path.name, path=path, size=path.stat().st_size)


def fake_output(arr: np.ndarray) -> np.ndarray:
    """A deterministic 'probability': dark input pixels -> high probability (shape 1x1x512x512)."""
    if arr.dtype == np.uint8:            # NV12: the Y plane is the first 512 rows
        y = arr[:512].astype(np.float32) / 255.0
    else:
        y = arr[0, 1].astype(np.float32)
    return (1.0 - y).reshape(1, 1, 512, 512).astype(np.float32)


class FakeDevice(object):
    """Session-like device with two slots; async execute runs in a worker thread taking ``device_time_s``.

    ``events`` records (kind, slot, monotonic time). ``fail_next`` makes the next N executes raise.
    """

    def __init__(self, device_time_s: float = 0.0) -> None:
        self.device_time_s = device_time_s
        self.inputs: Dict[int, np.ndarray] = {}
        self.outputs: Dict[int, np.ndarray] = {}
        self.events: List[Tuple[str, int, float]] = []
        self.fail_next = 0
        self.state = "ready"
        self.last_error = ""
        self.busy_since: Optional[float] = None
        self.runtime_info = {"runtime": "fake", "warning": None}
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self.executes = 0
        self.hang = threading.Event()

    def _log(self, kind: str, slot: int) -> None:
        with self._lock:
            self.events.append((kind, slot, time.monotonic()))

    def bind_thread(self) -> None:
        self._log("bind", -1)

    def write_input(self, slot: int, arr: np.ndarray) -> None:
        self._log("write", slot)
        self.inputs[slot] = np.array(arr, copy=True)

    def _run(self, slot: int) -> None:
        if self.device_time_s:
            time.sleep(self.device_time_s)
        while self.hang.is_set():
            time.sleep(0.01)
        self.outputs[slot] = fake_output(self.inputs[slot])

    def _check_fault(self) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            self.last_error = "acl.mdl.execute failed: 507011 (injected)"
            raise RuntimeError(self.last_error)

    def execute_async(self, slot: int) -> None:
        self._check_fault()
        self._log("launch", slot)
        self.busy_since = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(slot,))
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.busy_since = None
        self.executes += 1
        self._log("done", -1)

    def read_output(self, slot: int) -> np.ndarray:
        self._log("read", slot)
        return self.outputs[slot].copy()

    def infer(self, slot: int, arr: np.ndarray) -> np.ndarray:
        self.write_input(slot, arr)
        self._check_fault()
        self._log("launch", slot)
        self.busy_since = time.monotonic()
        self._run(slot)
        self.busy_since = None
        self.executes += 1
        self._log("done", -1)
        return self.read_output(slot)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass
