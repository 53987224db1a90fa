"""ACL error codes, the typed exceptions of the device layer and failure classification.

Classification used by :mod:`device.resilient` (see ``classify``):

* ``transient``: a retry of the same call may succeed: 507011 RT_MODEL_EXECUTE, 507014 RT_AICORE_TIMEOUT,
  507013 RT_SYS_DMA, 300000-class (queue/storage full or empty).
* ``device``: the device/runtime state is suspect; re-initialise the session (reset device, reload model):
  other 507xxx, 5000xx, 545xxx, 207001 RT_MEMORY_ALLOCATION, 200000 BAD_ALLOC, 245000 GE_MEMORY_ALLOCATION.
* ``permanent``: everything else (1xxxxx user/environment errors, 2000xx resource mismatch, 145xxx...).
"""
from __future__ import annotations

from typing import Dict, Optional

__all__ = ["ACL_ERROR_NAMES", "error_name", "classify", "is_transient", "DeviceError", "AclError",
           "check_ret", "ACL_SUCCESS"]

ACL_SUCCESS = 0

ACL_ERROR_NAMES: Dict[int, str] = {
    0: "ACL_SUCCESS",
    100000: "ACL_ERROR_INVALID_PARAM",
    100001: "ACL_ERROR_UNINITIALIZE",
    100002: "ACL_ERROR_REPEAT_INITIALIZE",
    100003: "ACL_ERROR_INVALID_FILE",
    100006: "ACL_ERROR_PARSE_FILE",
    100011: "ACL_ERROR_INVALID_MODEL_ID",
    100012: "ACL_ERROR_DESERIALIZE_MODEL",
    100013: "ACL_ERROR_PARSE_MODEL",
    100014: "ACL_ERROR_READ_MODEL_FAILURE",
    100015: "ACL_ERROR_MODEL_SIZE_INVALID",
    100017: "ACL_ERROR_MODEL_INPUT_NOT_MATCH",
    100018: "ACL_ERROR_MODEL_OUTPUT_NOT_MATCH",
    100037: "ACL_ERROR_REPEAT_FINALIZE",
    107000: "ACL_ERROR_RT_PARAM_INVALID",
    107001: "ACL_ERROR_RT_INVALID_DEVICEID",
    107002: "ACL_ERROR_RT_CONTEXT_NULL",
    107003: "ACL_ERROR_RT_STREAM_CONTEXT",
    107004: "ACL_ERROR_RT_MODEL_CONTEXT",
    107008: "ACL_ERROR_RT_ADDR_UNALIGNED",
    107016: "ACL_ERROR_RT_INVALID_MEMORY_TYPE",
    107017: "ACL_ERROR_RT_INVALID_HANDLE",
    145000: "ACL_ERROR_GE_PARAM_INVALID",
    145002: "ACL_ERROR_GE_EXEC_MODEL_PATH_INVALID",
    145003: "ACL_ERROR_GE_EXEC_MODEL_ID_INVALID",
    200000: "ACL_ERROR_BAD_ALLOC",
    200001: "ACL_ERROR_API_NOT_SUPPORT",
    200002: "ACL_ERROR_INVALID_DEVICE",
    200003: "ACL_ERROR_MEMORY_ADDRESS_UNALIGNED",
    200004: "ACL_ERROR_RESOURCE_NOT_MATCH",
    200005: "ACL_ERROR_INVALID_RESOURCE_HANDLE",
    207000: "ACL_ERROR_RT_FEATURE_NOT_SUPPORT",
    207001: "ACL_ERROR_RT_MEMORY_ALLOCATION",
    207002: "ACL_ERROR_RT_MEMORY_FREE",
    207004: "ACL_ERROR_RT_NO_DEVICE",
    207008: "ACL_ERROR_RT_NO_STREAM_RESOURCE",
    245000: "ACL_ERROR_GE_MEMORY_ALLOCATION",
    300000: "ACL_ERROR_STORAGE_OVER_LIMIT",
    500000: "ACL_ERROR_INTERNAL_ERROR",
    500001: "ACL_ERROR_FAILURE",
    500002: "ACL_ERROR_GE_FAILURE",
    500003: "ACL_ERROR_RT_FAILURE",
    500004: "ACL_ERROR_DRV_FAILURE",
    507000: "ACL_ERROR_RT_INTERNAL_ERROR",
    507011: "ACL_ERROR_RT_MODEL_EXECUTE",
    507013: "ACL_ERROR_RT_SYS_DMA",
    507014: "ACL_ERROR_RT_AICORE_TIMEOUT",
    507015: "ACL_ERROR_RT_AICORE_EXCEPTION",
    507033: "ACL_ERROR_RT_DEV_SETUP_ERROR",
    545000: "ACL_ERROR_GE_INTERNAL_ERROR",
    545001: "ACL_ERROR_GE_LOAD_MODEL",
}

_TRANSIENT_CODES = {507011, 507013, 507014}
_DEVICE_CODES = {200000, 207001, 245000}


def error_name(code: int) -> str:
    """Symbolic name of an ACL error code (``ACL_ERROR_UNKNOWN`` for codes not in the table)."""
    return ACL_ERROR_NAMES.get(int(code), "ACL_ERROR_UNKNOWN")


def classify(code: int) -> str:
    """Return ``"transient"``, ``"device"`` or ``"permanent"`` for an ACL error code (module docstring)."""
    code = int(code)
    if code in _TRANSIENT_CODES or 300000 <= code < 400000:
        return "transient"
    if code in _DEVICE_CODES or 500000 <= code < 600000:
        return "device"
    return "permanent"


def is_transient(code: int) -> bool:
    """True when retrying the failed call may help."""
    return classify(code) == "transient"


class DeviceError(RuntimeError):
    """Any failure of the device layer that is not a plain ACL return code (bad model, missing .om, ...)."""


class AclError(DeviceError):
    """An ACL call returned a non-zero code: ``"acl.mdl.execute failed: 145000 ACL_ERROR_GE_PARAM_INVALID"``."""

    def __init__(self, call: str, code: int, detail: Optional[str] = None) -> None:
        self.call = call
        self.code = int(code)
        self.name = error_name(self.code)
        self.detail = detail
        message = "%s failed: %d %s" % (call, self.code, self.name)
        if detail:
            message += " (%s)" % detail
        super().__init__(message)

    @property
    def kind(self) -> str:
        """``transient``, ``device`` or ``permanent`` (see :func:`classify`)."""
        return classify(self.code)

    @property
    def transient(self) -> bool:
        """Whether a retry may help."""
        return self.kind == "transient"

    def __reduce__(self):  # keep picklable with the custom __init__
        return (AclError, (self.call, self.code, self.detail))


def check_ret(call: str, ret: int, detail: Optional[str] = None) -> None:
    """Raise :class:`AclError` when ``ret`` is not ACL_SUCCESS."""
    if ret != ACL_SUCCESS:
        raise AclError(call, ret, detail)
