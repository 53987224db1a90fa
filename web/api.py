"""JSON API blueprint (/api/*) plus the machine endpoints /healthz and /metrics."""
from __future__ import annotations

import logging
from typing import Any, Dict

from flask import Blueprint, Response, jsonify, request, url_for

from vessel_seg.pipeline.appliance.uploads import UploadRejected
from vessel_seg.vocabulary import is_result_id
from vessel_seg.web.context import get_daemon, web_state
from vessel_seg.web.errors import json_error
from vessel_seg.web.filters import parse_filters
from vessel_seg.web.metrics import CONTENT_TYPE, render_prometheus
from vessel_seg.web.pagination import parse_page
from vessel_seg.web.pending import lookup_result
from vessel_seg.web.presenters import (
    StatusUnavailable,
    health_problem,
    json_safe,
    page_of_results,
    read_status,
    result_detail,
)
from vessel_seg.web.upload_flow import accept_upload

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__)


def _counts(store: Any) -> Dict[str, Any]:
    try:
        return json_safe(store.counts())
    except Exception:
        log.exception("results.counts() failed")
        return {}


@bp.route("/api/status")
def status() -> Response:
    """Daemon status: processed/failed/queued (ints), runtime, model, health and the rest of status()."""
    try:
        return jsonify(read_status(get_daemon()))
    except StatusUnavailable as exc:
        return json_error(503, str(exc))


@bp.route("/api/results")
def results() -> Response:
    """Newest first; ?page=&per_page= or ?offset=&limit=, filtered by ?patient_id= (exact), ?patient_name=
    (part of the name), ?date_from=&date_to= (acquisition dates, YYYY-MM-DD, inclusive). Answers items plus
    has_more, counts and the filters applied."""
    try:
        page = parse_page(request.args)
        filters = parse_filters(request.args)
    except ValueError as exc:
        return json_error(400, str(exc))
    store = get_daemon().results
    items, has_more = page_of_results(store, page.offset, page.limit, filters)
    return jsonify({"items": items, "offset": page.offset, "limit": page.limit, "page": page.page,
                    "per_page": page.limit, "has_more": has_more, "counts": _counts(store), "filters": filters})


@bp.route("/api/results/<result_id>")
def result(result_id: str) -> Response:
    """One result: metadata (result.json when done), state, reason, stages and download URLs."""
    if not is_result_id(result_id):
        return json_error(404, "no such result (ids are 16 lowercase hex digits)")
    store = get_daemon().results
    record = lookup_result(store, web_state().recent_uploads, result_id)
    if record is None:
        return json_error(404, "no such result")
    return jsonify(result_detail(store, record))


@bp.route("/api/failures")
def failures() -> Response:
    """Quarantined inputs and their reasons, newest first."""
    items = json_safe(get_daemon().results.quarantined())
    return jsonify({"items": items})


@bp.route("/api/upload", methods=["POST"])
def upload() -> Response:
    """Multipart field ``image``; 202 with {"id", "status_url", "result_url"} once the daemon has it."""
    try:
        result_id = accept_upload()
    except UploadRejected as exc:
        return json_error(exc.status, exc.message)
    resp = jsonify({"id": result_id, "status_url": url_for("api.result", result_id=result_id),
                    "result_url": url_for("pages.result_page", result_id=result_id)})
    resp.status_code = 202
    resp.headers["Location"] = url_for("api.result", result_id=result_id)
    return resp


@bp.route("/healthz")
def healthz() -> Response:
    """200 {"status": "ok"} when pipeline and device are healthy; 503 with a reason otherwise."""
    try:
        status = read_status(get_daemon())
    except StatusUnavailable as exc:
        resp = jsonify({"status": "unhealthy", "reason": str(exc)})
        resp.status_code = 503
        return resp
    problem = health_problem(status)
    if problem is None:
        return jsonify({"status": "ok", "device_state": status.get("device_state"),
                        "pipeline_state": status.get("pipeline_state")})
    resp = jsonify({"status": "unhealthy", "reason": problem, "health": status.get("health"),
                    "device_state": status.get("device_state"), "pipeline_state": status.get("pipeline_state")})
    resp.status_code = 503
    return resp


@bp.route("/metrics")
def metrics() -> Response:
    """Prometheus text format 0.0.4."""
    daemon = get_daemon()
    try:
        status = read_status(daemon)  # type: Dict[str, Any]
    except StatusUnavailable:
        status = {}
    return Response(render_prometheus(daemon, status), mimetype=None, content_type=CONTENT_TYPE)
