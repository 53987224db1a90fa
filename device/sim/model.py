"""A model loaded into the simulator: the bundle's ONNX (+ aipp.cfg next to it, as ATC would bake it in).

I/O as the converted .om reports it: without AIPP the input is float32 NCHW; with YUV420SP_U8 AIPP the input is
uint8 NV12 of H*W*3/2 bytes, ``get_input_dims`` gives (1, H, W, 3) NHWC and ``get_input_dims_v2``
(1, H*3/2, W, 1).  The output is float32 NCHW (ATC ``--output_type=FP32``).

``compute: surrogate`` output (timing emulation only): a vessel-like map, the black top-hat of the luminance (the NV12
Y plane, or the green channel of float input) with a 15-pixel disc, / 40 and clipped to [0, 1], resized by nearest
neighbour to the output size.  No network runs; thin dark structures come out as vessels, so what the host does
with a probability map (binarising, rendering, morphometry) costs what it costs on a real one.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..aipp import AippConfig, aipp_nv12_to_nchw
from ..onnx_proto import Graph
from .executor import OnnxExecutor

log = logging.getLogger("vessel_seg.device.sim")

# aclDataType / aclFormat
ACL_FLOAT, ACL_UINT8 = 0, 4
ACL_FORMAT_NCHW, ACL_FORMAT_NHWC = 0, 1


class SimModel:
    """Network + optional AIPP, executed on the CPU."""

    def __init__(self, graph: Graph, onnx_bytes: bytes, aipp: Optional[AippConfig], source: str,
                 ctx_handle: int, device_id: int) -> None:
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            raise ValueError("model must have exactly one input and one output")
        self.graph = graph
        self.onnx_bytes = onnx_bytes
        self.aipp = aipp
        self.source = source
        self.ctx_handle = ctx_handle
        self.device_id = device_id
        gi, go = graph.inputs[0], graph.outputs[0]
        self.input_name, self.output_name = gi.name, go.name
        self.net_input_shape = tuple(int(d) for d in gi.shape)
        self.output_shape = tuple(int(d) for d in go.shape)
        if len(self.net_input_shape) != 4 or len(self.output_shape) != 4 or min(self.net_input_shape) <= 0:
            raise ValueError("model input/output must be static 4-D NCHW, got %s / %s"
                             % (self.net_input_shape, self.output_shape))
        if aipp is not None and (aipp.src_h, aipp.src_w) != self.net_input_shape[2:]:
            raise ValueError("aipp.cfg source size %dx%d does not match the network input %s"
                             % (aipp.src_w, aipp.src_h, self.net_input_shape))
        self.busy: Optional[Tuple[str, int]] = None  # ("sync", thread id) or ("stream", handle)
        self.pending_async = 0
        self._lock = threading.Lock()
        self._cv2_net: Any = None
        self._cv2_failed = False
        self._executors: Dict[str, OnnxExecutor] = {}

    # -- what get_desc reports ------------------------------------------------------------------
    @property
    def input_size(self) -> int:
        if self.aipp is not None:
            return self.aipp.nbytes * self.net_input_shape[0]
        return int(np.prod(self.net_input_shape)) * 4

    @property
    def output_size(self) -> int:
        return int(np.prod(self.output_shape)) * 4

    def describe(self) -> Dict[str, Any]:
        """The descriptor contents (what acl.mdl.get_desc snapshots)."""
        n, c, h, w = self.net_input_shape
        if self.aipp is not None:
            in_dims, in_dims_v2 = [n, h, w, c], [n, h * 3 // 2, w, 1]
            in_type, in_fmt = ACL_UINT8, ACL_FORMAT_NHWC
        else:
            in_dims = in_dims_v2 = [n, c, h, w]
            in_type, in_fmt = ACL_FLOAT, ACL_FORMAT_NCHW
        return {
            "inputs": [{"name": self.input_name, "size": self.input_size, "dims": in_dims, "dims_v2": in_dims_v2,
                        "dtype": in_type, "format": in_fmt}],
            "outputs": [{"name": self.output_name, "size": self.output_size, "dims": list(self.output_shape),
                         "dims_v2": list(self.output_shape), "dtype": ACL_FLOAT, "format": ACL_FORMAT_NCHW}],
        }

    # -- execution ------------------------------------------------------------------------------
    def prepare(self, precision: str, executor: str) -> None:
        """Build what ``compute`` will need now (so load fails early on unsupported ops)."""
        if precision == "fp16" or executor == "numpy":
            self._executor(precision)
        else:
            self._cv2()
            if self._cv2_failed:
                self._executor("fp32")

    def _executor(self, precision: str) -> OnnxExecutor:
        ex = self._executors.get(precision)
        if ex is None:
            ex = OnnxExecutor(self.graph, precision)
            self._executors[precision] = ex
        return ex

    def _cv2(self) -> Any:
        if self._cv2_net is None and not self._cv2_failed:
            import cv2
            try:
                self._cv2_net = cv2.dnn.readNetFromONNX(np.frombuffer(self.onnx_bytes, dtype=np.uint8))
            except cv2.error as exc:
                self._cv2_failed = True
                log.warning("sim: cv2.dnn cannot load %s (%s); using the numpy executor",
                            self.source, str(exc).strip().splitlines()[-1] if str(exc).strip() else exc)
        return self._cv2_net

    def network_input(self, raw: np.ndarray, precision: str) -> np.ndarray:
        """Device input bytes -> the tensor the network sees (AIPP applied when configured)."""
        if self.aipp is not None:
            n = self.net_input_shape[0]
            nv12 = raw[: self.input_size].reshape((n,) + self.aipp.nv12_shape)
            return np.concatenate([aipp_nv12_to_nchw(nv12[i], self.aipp, precision) for i in range(n)])
        return raw[: self.input_size].view(np.float32).reshape(self.net_input_shape)

    def compute(self, raw: np.ndarray, precision: str, executor: str, mode: str) -> np.ndarray:
        """Run on one input (uint8 bytes of the input buffer); returns float32 output of ``output_shape``."""
        if mode == "surrogate":
            return self._surrogate(raw)
        x = self.network_input(raw, precision)
        with self._lock:
            if precision == "fp16" or executor == "numpy":
                y = self._executor(precision).run(x)
            else:
                net = self._cv2()
                if net is None:
                    y = self._executor("fp32").run(x)
                else:
                    net.setInput(np.ascontiguousarray(x, dtype=np.float32))
                    y = net.forward()
        y = np.asarray(y, dtype=np.float32)
        if y.size != int(np.prod(self.output_shape)):
            raise ValueError("network produced %s, expected %s" % (y.shape, self.output_shape))
        return y.reshape(self.output_shape)

    def _surrogate(self, raw: np.ndarray) -> np.ndarray:
        n, _c, h, w = self.net_input_shape
        if self.aipp is not None:
            lum = raw[: h * w].reshape(h, w)
        else:
            x = raw[: self.input_size].view(np.float32).reshape(self.net_input_shape)
            lum = (np.clip(x[0, 1 if x.shape[1] > 1 else 0], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        prob = surrogate_probability(lum)
        oh, ow = self.output_shape[2], self.output_shape[3]
        if (oh, ow) != (h, w):
            prob = prob[(np.arange(oh) * h // oh)[:, None], (np.arange(ow) * w // ow)[None, :]]
        out = np.empty(self.output_shape, dtype=np.float32)
        out[...] = prob
        return out


#: the surrogate's top-hat disc (pixels) and the top-hat depth that reads as probability 1
SURROGATE_DISC_PX, SURROGATE_FULL_DEPTH = 15, 40.0


def surrogate_probability(luminance: np.ndarray) -> np.ndarray:
    """The surrogate's probability of a uint8 luminance plane: dark thin structures (black top-hat), float32."""
    import cv2

    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (SURROGATE_DISC_PX, SURROGATE_DISC_PX))
    tophat = cv2.morphologyEx(np.ascontiguousarray(luminance, dtype=np.uint8), cv2.MORPH_BLACKHAT, disc)
    prob = tophat.astype(np.float32)
    prob *= np.float32(1.0 / SURROGATE_FULL_DEPTH)
    np.clip(prob, 0.0, 1.0, out=prob)
    return prob
