"""HTML pages blueprint: dashboard, results list, result detail (+ its files), failures, upload."""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from flask import Blueprint, Response, redirect, render_template, request, send_file, url_for

from vessel_seg.pipeline.appliance.uploads import SUPPORTED_DESCRIPTION, UploadRejected
from vessel_seg.pipeline.store.measurements import measurements_csv as store_measurements_csv
from vessel_seg.vocabulary import is_result_id
from vessel_seg.web.context import app_config, get_daemon, web_state
from vessel_seg.web.errors import error_response
from vessel_seg.web.filters import parse_filters
from vessel_seg.web.morphometry_view import morphometry_view
from vessel_seg.web.pagination import parse_page
from vessel_seg.web.pending import lookup_result
from vessel_seg.web.presenters import (
    StatusUnavailable,
    human_size,
    json_safe,
    list_item,
    page_of_results,
    read_status,
    result_detail,
)
from vessel_seg.web.result_files import ALLOWED_FILES, is_allowed_file
from vessel_seg.web.security import same_origin_problem
from vessel_seg.web.upload_flow import accept_upload

log = logging.getLogger(__name__)

bp = Blueprint("pages", __name__)

DASHBOARD_RESULTS = 12


def _status_or_none() -> Optional[Dict[str, Any]]:
    try:
        return read_status(get_daemon())
    except StatusUnavailable:
        return None


@bp.route("/")
def dashboard() -> str:
    """Runtime, health, queue, throughput, stage latency, last hour, newest results (JS keeps it live)."""
    store = get_daemon().results
    items = [list_item(store, r) for r in store.list(0, DASHBOARD_RESULTS)]
    return render_template("dashboard.html", status=_status_or_none(), items=items, active="dashboard")


@bp.route("/results")
def results_list() -> Any:
    """All results, newest first, paginated with ?page=, filtered by patient id, name and acquisition dates."""
    try:
        page = parse_page(request.args)
        filters = parse_filters(request.args)
    except ValueError as exc:
        return error_response(400, str(exc))
    items, has_more = page_of_results(get_daemon().results, page.offset, page.limit, filters)
    return render_template("results.html", items=items, page=page.page, per_page=page.limit,
                           has_more=has_more, filters=filters, status=_status_or_none(), active="results")


@bp.route("/results/<result_id>")
def result_page(result_id: str) -> Any:
    """One result: images side by side, overlay control, zoom, metrics, timings, downloads."""
    if not is_result_id(result_id):
        return error_response(404, "No result with this id.")
    store = get_daemon().results
    record = lookup_result(store, web_state().recent_uploads, result_id)
    if record is None:
        return error_response(404, "No result with this id.")
    detail = result_detail(store, record)
    available = {d["name"] for d in detail["downloads"]}
    base_name = "input.jpg" if "input.jpg" in available else "overlay.png"
    exports = []
    if hasattr(get_daemon(), "export_rows"):
        try:
            exports = json_safe(get_daemon().export_rows(result_id))
        except Exception:
            log.exception("export rows of %s unavailable", result_id)
    return render_template("result.html", r=detail, available=available, base_name=base_name,
                           exports=exports, morph=morphometry_view(detail.get("morphometry")),
                           status=_status_or_none(), active="results")


@bp.route("/results.csv")
def measurements_csv() -> Response:
    """Every finished result's vessel measurements with patient, eye and date (as ``vessel-seg measurements``)."""
    resp = Response(store_measurements_csv(get_daemon().results), mimetype="text/csv")
    resp.headers["Content-Disposition"] = 'attachment; filename="vessel-measurements.csv"'
    resp.headers["Cache-Control"] = "private, no-cache"
    return resp


@bp.route("/results/<result_id>/<name>")
def result_file(result_id: str, name: str) -> Response:
    """A result file, only for a valid id and an allow-listed name; ?download=1 forces an attachment."""
    if not is_result_id(result_id) or not is_allowed_file(name):
        return error_response(404, "No such file.")
    path = get_daemon().results.file_path(result_id, name)
    if path is None:
        return error_response(404, "No such file.")
    kind = ALLOWED_FILES[name]
    attach = request.args.get("download") == "1" or not kind.inline
    resp = send_file(str(path), mimetype=kind.mimetype, as_attachment=attach,
                     download_name="{}_{}".format(result_id, name), conditional=True)
    resp.headers["Cache-Control"] = "private, no-cache"
    return resp


@bp.route("/failures")
def failures() -> str:
    """Quarantined inputs with their reasons."""
    items = json_safe(get_daemon().results.quarantined())
    for item in items:
        rid = item.get("id")
        item["url"] = url_for("pages.result_page", result_id=rid) if is_result_id(rid) else None
    return render_template("failures.html", items=items, status=_status_or_none(), active="failures")


@bp.route("/upload", methods=["GET", "POST"])
def upload() -> Any:
    """Upload form (JS: XHR with progress to /api/upload); the plain form POST works without JS too."""
    limit = human_size(app_config()["max_upload_bytes"])
    if request.method == "POST":
        try:
            result_id = accept_upload()
        except UploadRejected as exc:
            return error_response(exc.status, exc.message)
        return redirect(url_for("pages.result_page", result_id=result_id), code=303)
    return render_template("upload.html", limit=limit, formats=SUPPORTED_DESCRIPTION,
                           status=_status_or_none(), active="upload")


@bp.route("/export/retry", methods=["POST"])
def export_retry() -> Any:
    """The retry action: form field ``result_id`` (one result) or ``all_rejected=1``; back to the page."""
    problem = same_origin_problem(request)
    if problem:
        return error_response(403, problem)
    daemon = get_daemon()
    if not hasattr(daemon, "export_retry"):
        return error_response(404, "This appliance has no PACS export.")
    rid = request.form.get("result_id") or None
    if rid is not None and not is_result_id(rid):
        return error_response(400, "Not a result id.")
    if rid is None and request.form.get("all_rejected") != "1":
        return error_response(400, "Name a result or ask for all rejected exports.")
    n = daemon.export_retry(rid, all_rejected=rid is None)
    log.info("export retry asked on the page: %d export(s) pending again", n)
    target = url_for("pages.result_page", result_id=rid) if rid else url_for("pages.dashboard")
    return redirect(target, code=303)
