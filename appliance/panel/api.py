"""JSON API under /api/ (described by openapi.json) and the Live page's event stream."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from pathlib import Path

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    request,
    session,
    stream_with_context,
)

from appliance.panel import db as pdb
from appliance.panel import live_stream, queries, sessions, users
from appliance.panel.views import configured_positions, may_command_calls
from appliance.store import commands as command_rows

bp = Blueprint("api", __name__, url_prefix="/api")

OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.json"


_INT = re.compile(r"-?[0-9]{1,12}")


class BadParam(ValueError):
    pass


def _err(code: int, message: str):
    return jsonify(error=message), code


def _int(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not _INT.fullmatch(raw):
        raise BadParam(f"{name}: must be an integer")
    v = int(raw)
    if not lo <= v <= hi:
        raise BadParam(f"{name}: must be between {lo} and {hi}")
    return v


def _num(name: str, lo: float, hi: float) -> float | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        v = float(raw)
    except ValueError:
        raise BadParam(f"{name}: must be a number (epoch seconds)") from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise BadParam(f"{name}: must be between {lo:g} and {hi:g}")
    return v


def _str(name: str, max_len: int = 64) -> str | None:
    raw = request.args.get(name)
    if raw is not None and len(raw) > max_len:
        raise BadParam(f"{name}: at most {max_len} characters")
    return raw or None


def _choice(name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    if raw not in choices:
        raise BadParam(f"{name}: must be one of {', '.join(choices)}")
    return raw


@bp.errorhandler(BadParam)
def _bad_param(exc):
    return _err(400, str(exc))


@bp.get("/openapi.json")
def openapi():
    return current_app.response_class(OPENAPI_PATH.read_text(), mimetype="application/json")


@bp.get("/me")
def me():
    return jsonify(name=g.user["name"], role=g.user["role"])


@bp.get("/positions/live")
def positions_live():
    return jsonify(queries.live_snapshot(pdb.get_db(), configured_positions()))


@bp.get("/calls")
def calls():
    since, until = _num("from", 0, 1e11), _num("to", 0, 1e11)
    return jsonify(
        queries.list_calls(
            pdb.get_db(),
            since,
            until,
            _str("position"),
            _str("customer"),
            _choice("alert", ("any", "yes", "no"), "any"),
            limit=_int("limit", 50, 1, 500),
            offset=_int("offset", 0, 0, 10**9),
        )
    )


@bp.get("/calls/<call_id>")
def call(call_id: str):
    c = queries.call_detail(pdb.get_db(), call_id)
    if c is None:
        return _err(404, "no such call")
    c["alerts"] = c.pop("alert_items")
    return jsonify(c)


@bp.get("/customers")
def customers():
    return jsonify(
        queries.list_customers(
            pdb.get_db(),
            q=_str("q"),
            limit=_int("limit", 100, 1, 500),
            offset=_int("offset", 0, 0, 10**9),
        )
    )


@bp.get("/customers/<ref>")
def customer(ref: str):
    c = queries.customer_detail(pdb.get_db(), ref)
    if c is None:
        return _err(404, "no such customer")
    return jsonify(c)


@bp.get("/alerts")
def alerts():
    return jsonify(
        queries.list_alerts(
            pdb.get_db(),
            state=_choice("state", ("open", "acknowledged", "all"), "open"),
            severity=_choice("severity", ("info", "warning", "critical"), None),
            limit=_int("limit", 50, 1, 500),
            offset=_int("offset", 0, 0, 10**9),
        )
    )


@bp.post("/alerts/<alert_id>/ack")
def ack(alert_id: str):
    db = pdb.get_db()
    row = queries.ack_alert(db, alert_id, g.user["name"])
    if row is None:
        return _err(404, "no such alert")
    users.audit(db, "alert_ack", g.user["name"], ip=request.remote_addr, detail={"alert": alert_id})
    return jsonify(row)


@bp.post("/positions/<position>/call")
def position_call(position: str):
    """Start, update or end the call at a position: queued in `commands`, which the daemon polls
    and applies through the same path as an MQTT command (`appliance.publish.commands`)."""
    from appliance.publish import contract

    if not may_command_calls():
        return _err(403, "this role may not start or end calls (panel.call_commands)")
    if position not in configured_positions():
        return _err(404, "not a configured position")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _err(400, "JSON object expected")
    cmd = {**body, "position": position, "msg_id": f"panel-{time.time_ns()}"}
    try:
        cmd = contract.parse_command(json.dumps(cmd).encode("utf-8"))
    except contract.ContractError as exc:
        return _err(400, str(exc))
    db = pdb.get_db()
    command_id, now = command_rows.enqueue(db, cmd, source="panel", user=g.user["name"])
    users.audit(
        db,
        "call_command",
        g.user["name"],
        ip=request.remote_addr,
        detail={"position": position, "action": cmd.get("action", "start")},
    )
    return jsonify({"queued": True, "id": command_id, "command": cmd, "at": now}), 202


@bp.get("/health")
def health():
    return jsonify(queries.health(pdb.get_db()))


@bp.get("/stream")
def stream():
    """Server-sent events for the Live page (`appliance.panel.live_stream`): 429 when the user
    (or the panel) has as many streams open as allowed."""
    cfg = current_app.config
    slots = current_app.extensions.setdefault("panel_streams", live_stream.StreamSlots())
    uid = g.user["id"]
    refused = slots.acquire(uid, int(cfg["STREAMS_PER_USER"]), int(cfg["MAX_STREAMS"]))
    if refused:
        resp = jsonify(error=f"too many live streams: {refused}")
        resp.status_code = 429
        resp.headers["Retry-After"] = "10"
        return resp
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            slots.release(uid)

    try:
        gen = live_stream.events(
            cfg["DB_PATH"],
            configured_positions(),
            session.get(sessions.SID),
            float(cfg["SSE_POLL_S"]),
            float(cfg["SSE_MAX_S"]),
            float(cfg["SSE_KEEPALIVE_S"]),
            sessions.limits(),
        )
        resp = Response(stream_with_context(gen), mimetype="text/event-stream")
    except BaseException:
        release()
        raise
    resp.call_on_close(release)  # the WSGI server closes the response when the client is gone
    resp.headers["X-Accel-Buffering"] = "no"
    return resp
