"""Sending one DICOM object to the PACS: DIMSE C-STORE (pynetdicom) or DICOMweb STOW-RS (urllib).

A transport's ``send(name, data)`` returns normally when the PACS accepted the object, raises
:class:`TransientError` when it may work later (PACS down, timeout, out of resources, HTTP 5xx) and
:class:`PermanentRejection` when resending the same object cannot help (a failure status, an association
rejected for good, a STOW answer listing the instance in FailedSOPSequence, HTTP 4xx). The outbox worker
retries the first with backoff and records the second with its reason.
"""
from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from io import BytesIO
from typing import Any, Dict, List, Optional

from pydicom import dcmread

__all__ = ["TransientError", "PermanentRejection", "DimseTransport", "StowTransport", "make_transport",
           "stow_failures", "stow_stored"]

log = logging.getLogger(__name__)


class TransientError(RuntimeError):
    """The send failed for a reason that may go away (the object stays pending)."""


class PermanentRejection(RuntimeError):
    """The PACS refused the object; sending it again unchanged will not help."""


# C-STORE status classes (PS3.4 B.2.3, PS3.7 C): failures worth retrying.
_TRANSIENT_STATUSES = tuple(range(0xA700, 0xA800)) + (0x0110, 0x0213, 0x0211)


class DimseTransport(object):
    """C-STORE over one association per object (pynetdicom)."""

    protocol = "dimse"

    def __init__(self, host: str, port: int, called_ae_title: str, calling_ae_title: str,
                 timeout_s: float = 30.0) -> None:
        self.host = host
        self.port = int(port)
        self.called = called_ae_title
        self.calling = calling_ae_title
        self.timeout_s = float(timeout_s)
        pynetdicom_log = logging.getLogger("pynetdicom")
        if pynetdicom_log.level == logging.NOTSET:   # one association per object: its INFO lines are noise
            pynetdicom_log.setLevel(logging.WARNING)

    def describe(self) -> str:
        return "C-STORE to %s@%s:%d" % (self.called, self.host, self.port)

    def send(self, name: str, data: bytes) -> None:
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
        from pynetdicom import AE

        ds = dcmread(BytesIO(data))
        ae = AE(ae_title=self.calling)
        ae.acse_timeout = self.timeout_s
        ae.dimse_timeout = self.timeout_s
        ae.network_timeout = self.timeout_s
        ae.connection_timeout = min(self.timeout_s, 10.0)
        ae.add_requested_context(ds.SOPClassUID, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        try:
            assoc = ae.associate(self.host, self.port, ae_title=self.called)
        except Exception as exc:   # socket errors surface as an unestablished association, but be safe
            raise TransientError("cannot connect to %s: %s" % (self.describe(), exc))
        if assoc.is_rejected:
            rsp = getattr(assoc.acceptor, "primitive", None)
            result = getattr(rsp, "result", None)
            text = "association rejected by %s" % self.describe()
            if rsp is not None:
                text += " (%s, %s)" % (rsp.result_str, rsp.reason_str)
            if result == 0x01:
                raise PermanentRejection(text)
            raise TransientError(text)
        if not assoc.is_established:
            if assoc.is_aborted and assoc.rejected_contexts:
                raise PermanentRejection("%s does not accept SOP class %s in Explicit or Implicit VR Little Endian "
                                         "(presentation context rejected)"
                                         % (self.describe(), ds.SOPClassUID))
            raise TransientError("cannot reach %s (connection refused, aborted or timed out)" % self.describe())
        try:
            if not assoc.accepted_contexts:
                raise PermanentRejection("%s does not accept SOP class %s" % (self.describe(), ds.SOPClassUID))
            try:
                status = assoc.send_c_store(ds)
            except (OSError, RuntimeError) as exc:
                raise TransientError("C-STORE of %s failed: %s" % (name, exc))
            except ValueError as exc:
                raise PermanentRejection("C-STORE of %s impossible: %s" % (name, exc))
        finally:
            try:
                assoc.release()
            except Exception:
                log.debug("releasing the association failed", exc_info=True)
        code = getattr(status, "Status", None) if status is not None else None
        if code is None:
            raise TransientError("no C-STORE response for %s from %s (timeout or abort)" % (name, self.describe()))
        code = int(code)
        comment = str(getattr(status, "ErrorComment", "") or "")
        if code == 0x0000 or code == 0x0001 or 0xB000 <= code <= 0xBFFF:
            if code:
                log.info("C-STORE of %s accepted with warning status 0x%04X %s", name, code, comment)
            return
        text = "C-STORE of %s to %s answered status 0x%04X%s" % (name, self.describe(), code,
                                                                 (" (%s)" % comment) if comment else "")
        if code in _TRANSIENT_STATUSES:
            raise TransientError(text)
        raise PermanentRejection(text)


# DICOM JSON tags (PS3.18 F.2)
_FAILED_SOP_SEQUENCE = "00081198"
_FAILURE_REASON = "00081197"
_REFERENCED_SOP_INSTANCE = "00081155"
_REFERENCED_SOP_SEQUENCE = "00081199"


def stow_failures(answer: Any) -> Dict[str, str]:
    """SOP instance UID -> failure reason of each item in a STOW-RS answer's FailedSOPSequence.

    A FailedSOPSequence with no Value (or an empty one) means no failure; only a non-empty Value counts.
    An item without a readable instance UID is reported under ``"?"``.
    """
    if isinstance(answer, list) and answer:
        answer = answer[0]
    if not isinstance(answer, dict):
        return {}
    failed = answer.get(_FAILED_SOP_SEQUENCE)
    items = failed.get("Value") if isinstance(failed, dict) else None
    if not isinstance(items, list) or not items:
        return {}
    out = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        uid = _json_first(item.get(_REFERENCED_SOP_INSTANCE)) or "?"
        reason = _json_first(item.get(_FAILURE_REASON))
        out[str(uid)] = "failure reason %s" % (("0x%04X" % reason) if isinstance(reason, int) else reason)
    return out


def stow_stored(answer: Any) -> Optional[List[str]]:
    """SOP instance UIDs a STOW-RS answer's ReferencedSOPSequence lists; None when the answer has none."""
    if isinstance(answer, list) and answer:
        answer = answer[0]
    if not isinstance(answer, dict) or _REFERENCED_SOP_SEQUENCE not in answer:
        return None
    element = answer[_REFERENCED_SOP_SEQUENCE]
    items = element.get("Value") if isinstance(element, dict) else None
    return [str(_json_first(i.get(_REFERENCED_SOP_INSTANCE))) for i in (items or []) if isinstance(i, dict)]


def _json_first(element: Any) -> Any:
    if isinstance(element, dict) and isinstance(element.get("Value"), list) and element["Value"]:
        return element["Value"][0]
    return None


class StowTransport(object):
    """STOW-RS: one ``POST {url}/studies`` (multipart/related; type="application/dicom") per object."""

    protocol = "stow"

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/") + "/studies"
        self.timeout_s = float(timeout_s)

    def describe(self) -> str:
        """The target without any user:password part of the URL (it is shown on the status page)."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.netloc.rpartition("@")[2]
        return "STOW-RS to %s" % urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))

    def send(self, name: str, data: bytes) -> None:
        sop_instance = str(dcmread(BytesIO(data), stop_before_pixels=True).SOPInstanceUID)
        boundary = "vessel-seg-" + os.urandom(12).hex()
        body = b"".join([b"--", boundary.encode("ascii"), b"\r\nContent-Type: application/dicom\r\n\r\n", data,
                         b"\r\n--", boundary.encode("ascii"), b"--\r\n"])
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=%s' % boundary,
            "Accept": "application/dicom+json",
        })
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status = response.status
                payload = response.read()
        except urllib.error.HTTPError as exc:
            payload = _read_quietly(exc)
            failures = stow_failures(_json_or_none(payload))
            text = "STOW-RS of %s: HTTP %d %s%s" % (name, exc.code, exc.reason,
                                                    ("; " + "; ".join(failures.values())) if failures else "")
            if exc.code >= 500 or exc.code in (408, 429):
                raise TransientError(text)
            raise PermanentRejection(text)
        except (urllib.error.URLError, OSError) as exc:
            raise TransientError("cannot reach %s: %s" % (self.describe(), getattr(exc, "reason", exc)))
        answer = _json_or_none(payload)
        failures = stow_failures(answer)
        if failures:
            reason = failures.get(sop_instance) or "; ".join(failures.values())
            raise PermanentRejection("STOW-RS of %s refused (HTTP %d): %s" % (name, status, reason))
        stored = stow_stored(answer)
        if stored is not None and sop_instance not in stored:
            # e.g. Orthanc's DICOMweb plugin when its own store failed: 200, both sequences without a Value
            raise PermanentRejection("STOW-RS of %s: HTTP %d, but the answer lists the instance neither as "
                                     "stored nor as failed (the PACS did not store it)" % (name, status))
        log.debug("STOW-RS of %s: HTTP %d", name, status)


def _read_quietly(exc: urllib.error.HTTPError) -> bytes:
    try:
        return exc.read()
    except Exception:
        return b""


def _json_or_none(payload: bytes) -> Optional[Any]:
    try:
        return json.loads(payload.decode("utf-8")) if payload else None
    except (UnicodeDecodeError, ValueError):
        return None


def make_transport(export_config: Dict[str, Any]) -> Any:
    """The transport ``dicom.export`` asks for (``protocol``: dimse or stow)."""
    if export_config["protocol"] == "stow":
        if not export_config.get("url"):
            raise ValueError("dicom.export.url must be set for protocol stow")
        return StowTransport(export_config["url"])
    return DimseTransport(export_config["host"], export_config["port"], export_config["called_ae_title"],
                          export_config["calling_ae_title"])
