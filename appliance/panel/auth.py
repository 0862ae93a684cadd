"""Login and logout (public endpoints). Failed and successful logins go to the audit log.

Logout ends the session on the server (`appliance.panel.sessions`); with `everywhere` every
session of the user."""

from __future__ import annotations

from flask import Blueprint, g, redirect, render_template, request, url_for

from appliance.panel import db as pdb
from appliance.panel import sessions, users
from appliance.panel.security import safe_local_path

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    return safe_local_path(target, url_for("views.live"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if g.get("user"):
            return redirect(_safe_next(request.args.get("next")))
        return render_template("login.html", error=None, username="")
    name = (request.form.get("username") or "").strip()
    password = request.form.get("password") or ""
    db = pdb.get_db()
    user = users.authenticate(db, name, password) if name and password else None
    if user is None:
        users.audit(db, "login_failed", name[:64], ok=False, ip=request.remote_addr)
        return render_template(
            "login.html", error="Wrong user name or password.", username=name[:64]
        ), 401
    sessions.start(db, user["id"], request.remote_addr)  # fresh session and CSRF token
    users.audit(db, "login_ok", user["name"], ip=request.remote_addr, detail={"role": user["role"]})
    return redirect(_safe_next(request.args.get("next")))


@bp.route("/logout", methods=["GET", "POST"])
def logout():
    if request.method == "GET":
        if not g.get("user"):
            return redirect(url_for("auth.login"))
        return render_template("logout.html")
    user = g.get("user")
    db = pdb.get_db()
    everywhere = request.form.get("everywhere") in ("1", "on", "true")
    ended = sessions.end(db, everywhere=everywhere)
    if user:
        detail = {"sessions_ended": ended}
        users.audit(db, "logout", user["name"], ip=request.remote_addr, detail=detail)
    return redirect(url_for("auth.login"))
