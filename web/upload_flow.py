"""The upload request flow shared by POST /api/upload and the no-JavaScript form on /upload."""
from __future__ import annotations

import logging

from flask import request

from vessel_seg.pipeline.appliance.uploads import UploadRejected, sniff_format, upload_name
from vessel_seg.web.context import get_daemon, web_state
from vessel_seg.web.security import same_origin_problem

log = logging.getLogger(__name__)

FIELD = "image"


def accept_upload() -> str:
    """Check origin and field, hand the bytes to ``daemon.submit_upload`` (which validates them); return the
    result id.

    Raises UploadRejected (403 cross-site, 400 missing field/empty, 413 over the ingest limit, 415 wrong type,
    422 damaged image, 503 when the daemon cannot take it). Bodies over ``web.max_upload_bytes`` never get
    here: Flask answers 413 first.
    """
    problem = same_origin_problem(request)
    if problem:
        raise UploadRejected(problem, 403)
    storage = request.files.get(FIELD)
    if storage is None:
        raise UploadRejected("missing multipart file field '{}'".format(FIELD), 400)
    data = storage.read()
    fmt = sniff_format(data)
    filename = upload_name(storage.filename, fmt) if fmt is not None else "upload"
    try:
        result_id = get_daemon().submit_upload(storage.filename or "", data)
    except UploadRejected as exc:
        log.info("upload %s refused: %s", filename, exc.message)
        raise
    except ValueError as exc:
        log.warning("daemon refused upload %s: %s", filename, exc)
        raise UploadRejected("upload refused: {}".format(exc), 400)
    except Exception:
        log.exception("daemon.submit_upload failed for %s", filename)
        raise UploadRejected("the appliance could not store the upload right now", 503)
    web_state().recent_uploads.add(str(result_id), filename)
    log.info("upload %s accepted as %s (%d bytes)", filename, result_id, len(data))
    return str(result_id)
