"""Supervisor panel (Flask). `create_app()` wires blueprints; templates and assets live in web/."""

from __future__ import annotations

import json
from pathlib import Path

from flask import Flask, g, render_template

from appliance.store import connect

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def get_db():
    """One read connection per request (Flask tutorial pattern)."""
    if "db" not in g:
        from flask import current_app

        g.db = connect(current_app.config["DB_PATH"])
    return g.db


def close_db(exc=None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.conn.close()


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(
        __name__, template_folder=str(WEB_DIR / "templates"), static_folder=str(WEB_DIR / "static")
    )
    app.config.from_mapping(DB_PATH="appliance.db")
    if test_config:
        app.config.update(test_config)
    app.teardown_appcontext(close_db)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/")
    def live():
        db = get_db()
        calls = [dict(r) for r in db.query("SELECT * FROM calls ORDER BY started_at DESC LIMIT 50")]
        for c in calls:
            c["m"] = json.loads(c["metrics"] or "{}")
        alerts = list(db.query("SELECT * FROM alerts ORDER BY created_at DESC LIMIT 20"))
        return render_template("minimal.html", calls=calls, alerts=alerts)

    return app
