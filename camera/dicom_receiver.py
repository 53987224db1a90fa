"""A DICOM C-STORE receiver (storage SCP, pynetdicom): the second intake, beside files dropped into capture/.

* Each instance a camera sends is written into the capture folder atomically (a dotfile, fsync, rename,
  fsync of the folder) and only then answered with success (0x0000): a camera never deletes an image the
  appliance could still lose. From there the one intake path applies (watcher, journal, dedupe, quarantine,
  recovery): the receiver never decodes or judges pixels.
* Only the calling AE titles in ``allowed_ae_titles`` may associate (others are rejected during association);
  only fundus-photograph SOP classes in a decodable transfer syntax are accepted, plus Verification (C-ECHO).
* At most ``max_associations`` associations at a time; timeouts end stalled peers; a malformed association
  only ends that association (pynetdicom runs each in its own thread).
* File names carry no patient data: ``rx_<UTC stamp>_<hash of the SOP instance UID>_<random>.dcm``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from vessel_seg.vocabulary import DICOM_COMPRESSED_SYNTAXES, DICOM_NATIVE_SYNTAXES, DICOM_SOP_CLASSES, utc_stamp

__all__ = ["DicomReceiver", "ReceiverError", "SUCCESS", "OUT_OF_RESOURCES"]

log = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700        # Refused: out of resources (disk full, too large, cannot write)
CANNOT_UNDERSTAND = 0xC000       # Error: cannot understand (the data set could not be taken)

DEFAULT_MAX_ASSOCIATIONS = 4
DEFAULT_TIMEOUT_S = 30.0


class ReceiverError(RuntimeError):
    """The receiver cannot start (port in use, bad configuration)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DicomReceiver(object):
    """Storage SCP writing every received instance into ``capture_dir``.

    Args:
        capture_dir: the capture folder the watcher reads.
        ae_title: this receiver's AE title.
        port: TCP port (0 picks a free one: see :attr:`port`).
        allowed_ae_titles: calling AE titles accepted; must not be empty (an open receiver of health data
            is refused).
        host: address to listen on (default all interfaces: cameras are on the clinic LAN).
        max_associations: concurrent associations accepted; more are rejected (busy).
        max_bytes: largest instance written (larger ones are refused with 0xA700).
        on_stored: called with the written path after each instance (e.g. to wake the watcher).
        timeout_s: ACSE, DIMSE and network timeouts.
    """

    def __init__(self, capture_dir: Union[str, "os.PathLike[str]"], ae_title: str, port: int,
                 allowed_ae_titles: Sequence[str], host: str = "0.0.0.0",
                 max_associations: int = DEFAULT_MAX_ASSOCIATIONS, max_bytes: int = 64 * 1024 * 1024,
                 on_stored: Optional[Callable[[Path], None]] = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        allowed = [str(t).strip() for t in allowed_ae_titles if str(t).strip()]
        if not allowed:
            raise ReceiverError("dicom.receiver.allowed_ae_titles is empty: name the AE titles of the cameras "
                                "allowed to send (an open receiver of patient data is refused)")
        self.capture_dir = Path(capture_dir)
        self.ae_title = str(ae_title).strip()
        self.requested_port = int(port)
        self.allowed_ae_titles = allowed
        self.host = host
        self.max_associations = int(max_associations)
        self.max_bytes = int(max_bytes)
        self.on_stored = on_stored
        self.timeout_s = float(timeout_s)
        self._server = None  # type: Any
        self._lock = threading.Lock()
        self.stored = 0
        self.refused = 0

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Listen (non-blocking: pynetdicom serves from its own threads); ReceiverError when it cannot."""
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import Verification

        logging.getLogger("pynetdicom").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
        self.capture_dir.mkdir(parents=True, exist_ok=True)
        ae = AE(ae_title=self.ae_title)
        ae.require_calling_aet = list(self.allowed_ae_titles)
        ae.maximum_associations = self.max_associations
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        syntaxes = list(DICOM_NATIVE_SYNTAXES) + list(DICOM_COMPRESSED_SYNTAXES)
        ae.add_supported_context(Verification)
        for sop_class in DICOM_SOP_CLASSES:
            ae.add_supported_context(sop_class, syntaxes)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_REJECTED, self._on_rejected),
                    (evt.EVT_ABORTED, self._on_aborted)]
        try:
            self._server = ae.start_server((self.host, self.requested_port), block=False, evt_handlers=handlers)
        except OSError as exc:
            raise ReceiverError("cannot listen for DICOM on %s:%d: %s" % (self.host, self.requested_port, exc))
        log.info("DICOM receiver %s listening on %s:%d (%d allowed calling AE title(s))", self.ae_title,
                 self.host, self.port, len(self.allowed_ae_titles))

    def stop(self) -> None:
        """Stop listening and end open associations."""
        server, self._server = self._server, None
        if server is not None:
            try:
                server.shutdown()
            except Exception:
                log.exception("stopping the DICOM receiver failed")

    @property
    def port(self) -> int:
        """The bound TCP port (useful with port 0)."""
        if self._server is None:
            return self.requested_port
        return int(self._server.server_address[1])

    # ------------------------------------------------------------------ events
    def _on_rejected(self, event: Any) -> None:
        with self._lock:
            self.refused += 1
        log.warning("DICOM association from %s refused (calling AE title not allowed, or busy)",
                    _peer(event))

    def _on_aborted(self, event: Any) -> None:
        log.info("DICOM association from %s aborted", _peer(event))

    def _on_store(self, event: Any) -> int:
        """Write the instance durably into capture/, then answer; never raises into pynetdicom."""
        try:
            data = event.request.DataSet.getvalue()
            meta = event.file_meta
        except Exception:
            log.exception("DICOM C-STORE from %s: the data set could not be taken", _peer(event))
            return CANNOT_UNDERSTAND
        if len(data) > self.max_bytes:
            log.warning("DICOM C-STORE from %s refused: %d bytes exceeds %d", _peer(event), len(data),
                        self.max_bytes)
            return OUT_OF_RESOURCES
        sop_uid = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
        try:
            path = self._write(meta, data, sop_uid)
        except OSError as exc:
            log.error("DICOM C-STORE from %s refused: cannot write into %s: %s", _peer(event), self.capture_dir, exc)
            return OUT_OF_RESOURCES
        with self._lock:
            self.stored += 1
        log.info("DICOM instance received from %s -> %s (%d bytes)", _peer(event), path.name, len(data))
        if self.on_stored is not None:
            try:
                self.on_stored(path)
            except Exception:
                log.exception("on_stored(%s) failed", path.name)
        return SUCCESS

    def _write(self, meta: Any, data: bytes, sop_uid: str) -> Path:
        """preamble + file meta + the data set as received, as a dotfile; fsync; rename; fsync the folder."""
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_file_meta_info

        header = DicomBytesIO()
        header.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(header, meta, enforce_standard=True)
        uid_hash = hashlib.sha256(sop_uid.encode("ascii", "replace")).hexdigest()[:12]
        name = "rx_%s_%s_%s.dcm" % (utc_stamp(), uid_hash, secrets.token_hex(3))
        final = self.capture_dir / name
        tmp = self.capture_dir / ("." + name + ".part")
        fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(header.getvalue())
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(str(tmp), str(final))
            _fsync_dir(self.capture_dir)
        except BaseException:
            try:
                os.unlink(str(tmp))
            except OSError:
                pass
            raise
        return final


def _peer(event: Any) -> str:
    try:
        req = event.assoc.requestor
        return "%s (%s:%s)" % (req.ae_title, req.address, req.port)
    except Exception:
        return "?"
