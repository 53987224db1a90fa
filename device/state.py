"""DeviceState: what the daemon and status page show about the NPU."""
from __future__ import annotations

import enum

__all__ = ["DeviceState"]


class DeviceState(str, enum.Enum):
    """Lifecycle of a :class:`device.resilient.ResilientDevice` (values are the strings shown in status)."""

    STARTING = "starting"
    READY = "ready"
    RECOVERING = "recovering"
    FAILED = "failed"
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value
