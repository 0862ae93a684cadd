"""HTML pages: Live, Calls, Call detail, Customers, Alerts, Box health."""

from __future__ import annotations

import time

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for

from appliance.panel import db as pdb
from appliance.panel import queries, users
from appliance.panel.security import safe_local_path
from appliance.store import commands as command_rows

bp = Blueprint("views", __name__)

PAGE = 50


def configured_positions() -> list[str]:
    cfg = current_app.config
    if cfg.get("POSITIONS"):
        return list(cfg["POSITIONS"])
    app_cfg = cfg.get("APP_CONFIG")
    return [p.id for p in app_cfg.positions] if app_cfg is not None else []


def may_command_calls() -> bool:
    """Whether this user may start and end calls ([panel] call_commands; admins whenever it is
    not off). Only at configured positions: the daemon serves no others."""
    who = current_app.config.get("CALL_COMMANDS", "supervisor")
    role = g.user["role"] if g.get("user") else None
    return role is not None and (who == "supervisor" or (who == "admin" and role == "admin"))


def command_positions() -> list[str]:
    """Positions this user may start and end calls at."""
    return configured_positions() if may_command_calls() else []


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    try:
        return min(max(int(request.args.get(name, default)), lo), hi)
    except ValueError:
        return default


@bp.get("/")
def live():
    snap = queries.live_snapshot(pdb.get_db(), configured_positions())
    return render_template("live.html", snap=snap, page="live", commands=command_positions())


@bp.get("/calls")
def calls():
    args = request.args
    error = None
    try:
        since = queries.parse_time(args.get("from"))
        until = queries.parse_time(args.get("to"))
    except ValueError as exc:
        error, since, until = str(exc), None, None
    alert = args.get("alert") if args.get("alert") in ("yes", "no") else None
    offset = _int_arg("offset", 0, 0, 10**9)
    db = pdb.get_db()
    result = queries.list_calls(
        db,
        since,
        until,
        args.get("position") or None,
        args.get("customer") or None,
        alert,
        limit=PAGE,
        offset=offset,
    )
    return render_template(
        "calls.html",
        result=result,
        positions=queries.positions(db),
        f=args,
        error=error,
        page="calls",
        page_size=PAGE,
    )


@bp.get("/calls/<call_id>")
def call_detail(call_id: str):
    call = queries.call_detail(pdb.get_db(), call_id)
    if call is None:
        abort(404)
    return render_template("call.html", call=call, m=call["metrics"], page="calls")


@bp.post("/calls/<call_id>/transcription")
def transcription(call_id: str):
    """Pause or resume the transcription of a live call (both speakers), e.g. while the
    customer pays: queued like any call command and applied by the daemon. Any signed-in user
    may do it: it only ever stores less."""
    db = pdb.get_db()
    call = queries.call_detail(db, call_id)
    action = request.form.get("action")
    if call is None or call["state"] != "live" or action not in ("pause", "resume"):
        abort(404 if call is None else 400)
    cmd = {"position": call["position"], "action": action, "msg_id": f"panel-{time.time_ns()}"}
    command_rows.enqueue(db, cmd, source="panel", user=g.user["name"])
    users.audit(
        db,
        f"transcription_{action}",
        g.user["name"],
        ip=request.remote_addr,
        detail={"call": call_id},
    )
    return redirect(url_for("views.call_detail", call_id=call_id))


@bp.get("/customers")
def customers():
    q = request.args.get("q") or None
    result = queries.list_customers(pdb.get_db(), q=q, limit=200)
    return render_template("customers.html", result=result, q=q or "", page="customers")


@bp.get("/customers/<ref>")
def customer_detail(ref: str):
    c = queries.customer_detail(pdb.get_db(), ref)
    if c is None:
        abort(404)
    return render_template("customer.html", c=c, page="customers")


@bp.get("/alerts")
def alerts():
    state = request.args.get("state", "open")
    if state not in ("open", "acknowledged", "all"):
        state = "open"
    severity = (
        request.args.get("severity")
        if request.args.get("severity") in ("info", "warning", "critical")
        else None
    )
    offset = _int_arg("offset", 0, 0, 10**9)
    result = queries.list_alerts(
        pdb.get_db(), state=state, severity=severity, limit=PAGE, offset=offset
    )
    return render_template(
        "alerts.html",
        result=result,
        state=state,
        severity=severity or "",
        page="alerts",
        page_size=PAGE,
    )


@bp.post("/alerts/<alert_id>/ack")
def ack(alert_id: str):
    db = pdb.get_db()
    row = queries.ack_alert(db, alert_id, g.user["name"])
    if row is None:
        abort(404)
    users.audit(db, "alert_ack", g.user["name"], ip=request.remote_addr, detail={"alert": alert_id})
    return redirect(safe_local_path(request.form.get("back"), url_for("views.alerts")))


@bp.get("/health")
def health():
    h = queries.health(pdb.get_db())
    return render_template(
        "health.html",
        h=h,
        k=queries.health_kpis(h["snapshot"]),
        rows=[r for r in queries.flatten(h["snapshot"]) if r[0] not in ("streams", "alarms")]
        if h["snapshot"]
        else [],
        page="health",
    )
