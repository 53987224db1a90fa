"""Small fakes and fixtures shared by the pipeline unit tests (no board, no real model needed)."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from vessel_seg.camera.synthetic import make_fundus
from vessel_seg.device import DeviceState, InferenceDevice
from vessel_seg.pipeline.engine.stages import ModelInfo, Stages, StageSettings
from vessel_seg.pipeline.shared.preprocess import PreprocessParams


def fundus_like(width: int = 200, height: int = 180, seed: int = 0) -> np.ndarray:
    """A synthetic fundus RGB image (the one generator: camera.synthetic)."""
    return make_fundus(width=width, height=height, seed=seed)[0]


def write_image(path: Path, rgb: np.ndarray) -> Path:
    """Write RGB as an image file (format from the extension)."""
    ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok, path
    return path


def make_stages(results_dir: Path, nv12: bool = True, params: Optional[PreprocessParams] = None,
                **settings: Any) -> Stages:
    shape = (768, 512) if nv12 else (1, 3, 512, 512)
    model = ModelInfo(name="fake-net", version="0.0.1", nv12=nv12, host_input_shape=shape,
                      params=params or PreprocessParams(), threshold=0.5, runtime="fake", precision="fp32")
    return Stages(model, StageSettings(**settings), results_dir)


def fake_output(arr: np.ndarray) -> np.ndarray:
    """A deterministic 'probability': dark input pixels -> high probability (shape 1x1x512x512)."""
    if arr.dtype == np.uint8:            # NV12: the Y plane is the first 512 rows
        y = arr[:512].astype(np.float32) / 255.0
    else:
        y = arr[0, 1].astype(np.float32)
    return (1.0 - y).reshape(1, 1, 512, 512).astype(np.float32)


class FakeDevice(InferenceDevice):
    """An InferenceDevice without a model: the output is :func:`fake_output` of the input.

    Async executes run one after another on an emulated stream (a chain of threads), each taking
    ``device_time_s``. ``events`` records (kind, slot, monotonic time) with kinds write/launch/done/read.
    ``fail_next`` makes the next N submits or infers raise; ``hang`` blocks executes while set.
    """

    def __init__(self, device_time_s: float = 0.0) -> None:
        self.device_time_s = device_time_s
        self.inputs: Dict[int, np.ndarray] = {}
        self.outputs: Dict[int, np.ndarray] = {}
        self.events: List[Tuple[str, int, float]] = []
        self.fail_next = 0
        self.state = DeviceState.READY
        self.last_error = ""
        self.runtime_info = {"runtime": "fake", "warning": None}
        self.stats = {"executes": 0, "retries": 0, "reinits": 0, "failures": 0}
        self._threads: Dict[int, threading.Thread] = {}
        self._last: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._inflight: Dict[int, float] = {}
        self.executes = 0
        self.restarts = 0
        self.fail_state = DeviceState.READY   # state after an injected fault (FAILED: needs restart())
        self.hang = threading.Event()

    @property
    def busy_since(self) -> Optional[float]:
        with self._lock:
            return min(self._inflight.values()) if self._inflight else None

    def _log(self, kind: str, slot: int) -> None:
        with self._lock:
            self.events.append((kind, slot, time.monotonic()))

    def _check_fault(self) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            self.last_error = "acl.mdl.execute failed: 507011 (injected)"
            self.state = self.fail_state
            raise RuntimeError(self.last_error)
        if self.state is DeviceState.FAILED:
            raise RuntimeError("device failed: " + self.last_error)

    def _execute(self, slot: int, after: Optional[threading.Thread]) -> None:
        if after is not None:
            after.join()
        self._log("launch", slot)
        if self.device_time_s:
            time.sleep(self.device_time_s)
        while self.hang.is_set():
            time.sleep(0.01)
        self.outputs[slot] = fake_output(self.inputs[slot])
        self._log("done", slot)

    def submit(self, slot: int, arr: np.ndarray) -> None:
        self._check_fault()
        self._log("write", slot)
        self.inputs[slot] = np.array(arr, copy=True)
        with self._lock:
            self._inflight[slot] = time.monotonic()
        t = threading.Thread(target=self._execute, args=(slot, self._last))
        self._threads[slot] = t
        self._last = t
        t.start()

    def discard(self, slot: int) -> None:
        with self._lock:
            self._inflight.pop(slot, None)
        self._log("discard", slot)

    def collect(self, slot: int) -> np.ndarray:
        self._threads.pop(slot).join()
        with self._lock:
            self._inflight.pop(slot, None)
        self.executes += 1
        self._log("read", slot)
        return self.outputs[slot].copy()

    def infer(self, slot: int, arr: np.ndarray) -> np.ndarray:
        self._check_fault()
        self._log("write", slot)
        self.inputs[slot] = np.array(arr, copy=True)
        with self._lock:
            self._inflight[slot] = time.monotonic()
        self._execute(slot, None)
        with self._lock:
            self._inflight.pop(slot, None)
        self.executes += 1
        self._log("read", slot)
        return self.outputs[slot].copy()

    def restart(self) -> None:
        self.restarts += 1
        self.state = DeviceState.READY

    def start(self) -> "FakeDevice":
        return self

    def close(self, finalize: bool = False) -> None:
        pass


def tiny_bundle(directory: Path, aipp: bool = True, threshold: float = 0.5,
                params: Optional[PreprocessParams] = None) -> Path:
    """A real, tiny model bundle (1x1 conv + sigmoid: dark pixels -> high probability) for the simulator."""
    from vessel_seg.device.aipp import default_aipp_cfg_text
    from vessel_seg.device.bundle import write_bundle
    from vessel_seg.device.onnx_proto import Graph, Node, ValueInfo

    w = np.full((1, 3, 1, 1), -4.0 / 3.0, np.float32)
    b = np.array([2.0], np.float32)
    graph = Graph(name="tiny", nodes=[Node("Conv", ["image", "w", "b"], ["logit"], attrs={"kernel_shape": [1, 1]}),
                                      Node("Sigmoid", ["logit"], ["probability"])],
                  initializers={"w": w, "b": b}, inputs=[ValueInfo("image", [1, 3, 512, 512])],
                  outputs=[ValueInfo("probability", [1, 1, 512, 512])])
    meta = {"name": "tiny-test-net", "version": "9.9.9", "threshold": threshold,
            "preprocess": (params or PreprocessParams()).to_dict()}
    write_bundle(str(directory), graph, meta, default_aipp_cfg_text(512, 512) if aipp else None)
    return directory


def daemon_config(data_dir: Path, bundle: Path) -> Dict[str, Any]:
    """A daemon config for in-process tests: the simulator, the tiny bundle, no web, fast ingest."""
    from vessel_seg.pipeline.appliance.config import default_config

    c = default_config()
    c["data_dir"] = str(data_dir)
    c["device"]["runtime"] = "sim"
    c["model"]["bundle"] = str(bundle)
    c["web"]["enabled"] = False
    c["ingest"]["stable_seconds"] = 0.1
    c["ingest"]["rescan_seconds"] = 1.0
    return c


class InProcessDaemons(object):
    """Daemons a test starts in its own process (``start(cfg)``), all stopped by ``stop_all``."""

    def __init__(self, default_cfg: Optional[Dict[str, Any]] = None) -> None:
        self.default_cfg = default_cfg
        self.started: List[Any] = []

    def start(self, cfg: Optional[Dict[str, Any]] = None) -> Any:
        from vessel_seg.pipeline.appliance.daemon import Daemon

        d = Daemon(cfg or self.default_cfg, systemd=False)
        d.start()
        self.started.append(d)
        return d

    def stop_all(self, timeout: float = 10.0) -> None:
        for d in self.started:
            d.stop(timeout)


def wait_until(predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """The proving ground's ``wait_for`` at the in-process tests' faster poll."""
    from vessel_seg.pipeline.proving.supervised import wait_for

    return wait_for(predicate, timeout, what, poll_s=0.05)
