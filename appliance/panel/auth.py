"""Login and logout (public endpoints). Failed and successful logins go to the audit log."""

from __future__ import annotations

from flask import Blueprint, g, redirect, render_template, request, session, url_for

from appliance.panel import db as pdb
from appliance.panel import users
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
    session.clear()  # no session fixation: a fresh session (and CSRF token) after login
    session.permanent = True
    session["uid"] = user["id"]
    session["role"] = user["role"]
    users.audit(db, "login_ok", user["name"], ip=request.remote_addr, detail={"role": user["role"]})
    return redirect(_safe_next(request.args.get("next")))


@bp.route("/logout", methods=["GET", "POST"])
def logout():
    if request.method == "GET":
        if not g.get("user"):
            return redirect(url_for("auth.login"))
        return render_template("logout.html")
    user = g.get("user")
    if user:
        users.audit(pdb.get_db(), "logout", user["name"], ip=request.remote_addr)
    session.clear()
    return redirect(url_for("auth.login"))
