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
  SSE_KEEPALIVE_S   seconds between keep-alives (a gone client is noticed at the second one)
  SESSION_IDLE_S, SESSION_MAX_S  idle timeout and absolute lifetime of a session ([panel])
  STREAMS_PER_USER, MAX_STREAMS  live streams per user (429 above) and in all ([panel])
  CALL_COMMANDS     who may start/end calls: "supervisor", "admin" or "off" ([panel])
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


def _panel_section(app_cfg) -> dict:
    """App settings from the config's [panel] section (its defaults without a config)."""
    from appliance.config import PanelConfig

    p = app_cfg.panel if app_cfg is not None else PanelConfig()
    return {
        "SESSION_IDLE_S": p.session_idle_minutes * 60.0,
        "SESSION_MAX_S": p.session_max_hours * 3600.0,
        "STREAMS_PER_USER": p.streams_per_user,
        "MAX_STREAMS": p.max_streams,
        "CALL_COMMANDS": p.call_commands,
    }


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
        SSE_KEEPALIVE_S=2.0,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_REFRESH_EACH_REQUEST=False,  # the cookie's expiry is the session's absolute end
        WTF_CSRF_TIME_LIMIT=None,  # valid as long as the session: a Live page stays open all shift
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    if test_config:
        app.config.update(test_config)
    for key, value in _panel_section(app.config.get("APP_CONFIG")).items():
        app.config.setdefault(key, value)  # explicit test_config values win
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=app.config["SESSION_MAX_S"])
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
