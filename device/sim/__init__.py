"""Simulated pyACL runtime for dev machines and CI: ``from device.sim import acl, control``.

``acl`` has pyACL's names, signatures and return shapes and enforces the rules of the pyACL reference
(section 8): codes not exceptions, init/finalize state, per-thread contexts, pointer provenance, bounds,
execute checks, async visibility at synchronize, teardown order, leak reports, no concurrent execute of one
model, no use in a forked child.  The network itself runs on the CPU from the bundle's ONNX (cv2.dnn for FP32, a
numpy executor emulating FP16).  ``control`` injects faults, hangs and device time (tests, benchmarks).
"""
from __future__ import annotations

from . import acl, control

__all__ = ["acl", "control"]
