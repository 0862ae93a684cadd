"""Login guard, roles, CSRF, the login rate limit and the security headers.

Order matters: the login guard is registered before CSRFProtect, so an unauthenticated request is
refused (302 to /login for pages, 401 for the API) before its CSRF token is even looked at.
"""

from __future__ import annotations

import functools
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from flask import (
    Flask,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFError, CSRFProtect

from appliance.panel import db as pdb
from appliance.panel import sessions

PUBLIC_ENDPOINTS = frozenset({"auth.login", "auth.logout", "ops.healthz", "ops.metrics", "static"})
"""Endpoints reachable without a session (/metrics checks its own bearer token)."""

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: Flask-WTF checks the Referer of POSTs under TLS
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}

csrf = CSRFProtect()


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/metrics"


def load_secret_key(db_path: str | None) -> bytes:
    """A per-box secret (0600 file next to the database) so sessions survive restarts and workers."""
    env = os.environ.get("APPLIANCE_PANEL_SECRET_FILE")
    path = (
        Path(env)
        if env
        else (Path(db_path).resolve().parent / "panel-secret.key" if db_path else None)
    )
    if path is None:
        return secrets.token_bytes(32)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker won the race
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def safe_local_path(target: str | None, default: str) -> str:
    """`target` when it is a path on this site, else `default` (open-redirect guard): no scheme,
    no host, no `//`, no backslashes or control characters (browsers drop tabs and newlines,
    turning `/<TAB>/evil` into `//evil`)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(c) < 32 or c.isspace() for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def current_user() -> dict | None:
    return g.get("user")


def load_user() -> None:
    """The session's user from the server-side session table (role as stored now)."""
    g.user = None
    if not session or current_app.config.get("DB_PATH") is None:
        return
    g.user = sessions.user_for_request(pdb.get_db())


def require_login():
    """before_request: every endpoint except the public ones needs a logged-in user."""
    if request.endpoint == "static":
        return None
    load_user()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if request.endpoint is None:
        return None  # 404/405 as usual
    if g.user is None:
        if wants_json():
            return jsonify(error="login required"), 401
        nxt = request.full_path if request.method == "GET" else None
        if nxt and nxt.endswith("?"):
            nxt = nxt[:-1]
        return redirect(
            url_for("auth.login", next=nxt) if nxt and nxt != "/" else url_for("auth.login")
        )
    return None


def admin_required(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        user = current_user()
        if user is None or user["role"] != "admin":
            abort(403)
        return fn(*args, **kwargs)

    return wrapper


def set_headers(response):
    for k, v in HEADERS.items():
        response.headers.setdefault(k, v)
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _error(code: int, message: str):
    if wants_json():
        return jsonify(error=message), code
    return render_template("error.html", code=code, message=message), code


def init_app(app: Flask) -> Limiter:
    app.before_request(require_login)  # before CSRFProtect's own before_request
    csrf.init_app(app)
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri="memory://",  # explicit: no "in-memory storage" warning
        default_limits=[],
        headers_enabled=False,
    )
    # Only failed attempts count (the response is not a redirect to the app); the 11th gets 429.
    login_view = app.view_functions["auth.login"]
    app.view_functions["auth.login"] = limiter.limit(
        app.config["LOGIN_RATE_LIMIT"],
        methods=["POST"],
        deduct_when=lambda response: response.status_code != 302,
    )(login_view)
    app.extensions["panel_limiter"] = limiter
    app.after_request(set_headers)

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return _error(400, f"request refused: {exc.description}")

    @app.errorhandler(429)
    def too_many(exc):
        if request.endpoint == "auth.login":
            return render_template(
                "login.html",
                error="Too many failed sign-in attempts. Wait a minute and try again.",
                username="",
            ), 429
        return _error(429, "too many requests")

    @app.errorhandler(403)
    def forbidden(exc):
        return _error(403, "forbidden: this needs the admin role")

    @app.errorhandler(404)
    def not_found(exc):
        return _error(404, "not found")

    @app.errorhandler(405)
    def not_allowed(exc):
        resp = exc.get_response()
        body, code = _error(405, "method not allowed")
        if not isinstance(body, str):
            body.headers["Allow"] = resp.headers.get("Allow", "")
            return body, code
        return body, code, {"Allow": resp.headers.get("Allow", "")}

    @app.errorhandler(400)
    def bad_request(exc):
        return _error(400, getattr(exc, "description", "bad request"))

    return limiter
