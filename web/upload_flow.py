"""The upload request flow shared by POST /api/upload and the no-JavaScript form on /upload."""
from __future__ import annotations

import logging

from flask import request

from vessel_seg.web.context import get_daemon, web_state
from vessel_seg.web.security import same_origin_problem
from vessel_seg.web.uploads import UploadRejected, sanitize_filename, verify_image

log = logging.getLogger(__name__)

FIELD = "image"


def accept_upload() -> str:
    """Check origin, field and content, hand the bytes to ``daemon.submit_upload``; return the result id.

    Raises UploadRejected (403 cross-site, 400 missing field/empty, 415 wrong type, 422 damaged image,
    503 when the daemon cannot take it). Oversized bodies never get here: Flask answers 413 first.
    """
    problem = same_origin_problem(request)
    if problem:
        raise UploadRejected(problem, 403)
    storage = request.files.get(FIELD)
    if storage is None:
        raise UploadRejected("missing multipart file field '{}'".format(FIELD), 400)
    data = storage.read()
    fmt = verify_image(data)
    filename = sanitize_filename(storage.filename, fmt)
    try:
        result_id = get_daemon().submit_upload(filename, data)
    except ValueError as exc:
        log.warning("daemon refused upload %s: %s", filename, exc)
        raise UploadRejected("upload refused: {}".format(exc), 400)
    except Exception:
        log.exception("daemon.submit_upload failed for %s", filename)
        raise UploadRejected("the appliance could not store the upload right now", 503)
    web_state().recent_uploads.add(str(result_id), filename)
    log.info("upload %s accepted as %s (%d bytes)", filename, result_id, len(data))
    return str(result_id)
