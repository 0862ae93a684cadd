"""Supervisor panel (Flask). `create_app()` wires blueprints; templates and assets live in web/.

Config keys (`create_app(test_config)`):
  DB_PATH           the appliance database (None: no database, e.g. `web --list-routes`)
  DEMO              demo mode: creates a `demo` supervisor and prints its password to stderr
  TLS               served over TLS: Secure `__Host-` session cookie
  METRICS_TOKEN     bearer token for /metrics (else APPLIANCE_METRICS_TOKEN[_FILE]; none = 401)
  POSITIONS         configured position ids (shown on Live even before their first call)
  APP_CONFIG        an appliance.config.AppConfig (rules, retention, MQTT views)
  LOGIN_RATE_LIMIT  failed logins allowed per client (default "10 per minute")
  SSE_POLL_S, SSE_MAX_S  how often the event stream polls the database, how long one stream lives
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from flask import Flask

from appliance.panel.db import close_db, get_db
from appliance.panel.users import ensure_demo_user

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

__all__ = ["WEB_DIR", "create_app", "ensure_demo_user", "get_db", "close_db"]


def create_app(test_config: dict | None = None) -> Flask:
    from appliance.panel import admin, api, auth, filters, ops, security, views
    from appliance.panel.users import open_db

    app = Flask(
        __name__, template_folder=str(WEB_DIR / "templates"), static_folder=str(WEB_DIR / "static")
    )
    app.config.from_mapping(
        DB_PATH="appliance.db",
        DEMO=False,
        TLS=False,
        SECRET_KEY=None,
        METRICS_TOKEN=None,
        POSITIONS=[],
        APP_CONFIG=None,
        LOGIN_RATE_LIMIT="10 per minute",
        SSE_POLL_S=0.3,
        SSE_MAX_S=300.0,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        WTF_CSRF_TIME_LIMIT=None,  # valid as long as the session: a Live page stays open all shift
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    if test_config:
        app.config.update(test_config)
    tls = bool(app.config["TLS"])
    app.config["SESSION_COOKIE_SECURE"] = tls
    app.config.setdefault("SESSION_COOKIE_NAME", "session")
    app.config["SESSION_COOKIE_NAME"] = "__Host-panel" if tls else "panel"
    db_path = app.config["DB_PATH"]
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = security.load_secret_key(db_path)
    if db_path is not None:
        db = open_db(db_path)  # the appliance's schema and the panel's own migration set
        db.conn.close()
    app.teardown_appcontext(close_db)

    app.register_blueprint(auth.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)
    filters.init_app(app)
    security.init_app(app)

    if app.config["DEMO"] and db_path is not None and not app.config.get("DEMO_USER_PRINTED"):
        name, password = ensure_demo_user(db_path)
        print(
            f"panel login (demo): user {name!r} password {password!r}", file=sys.stderr, flush=True
        )
    return app
