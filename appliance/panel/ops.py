"""Operational endpoints: /healthz (public) and /metrics (Prometheus text, bearer token)."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request

from appliance.panel import db as pdb
from appliance.panel import queries

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


def metrics_token() -> str | None:
    """Config METRICS_TOKEN, else $APPLIANCE_METRICS_TOKEN, else the token file
    ($APPLIANCE_METRICS_TOKEN_FILE or the config's panel.metrics_token_file), read per request."""
    cfg = current_app.config
    token = cfg.get("METRICS_TOKEN") or os.environ.get("APPLIANCE_METRICS_TOKEN")
    if token:
        return token
    path = os.environ.get("APPLIANCE_METRICS_TOKEN_FILE") or cfg.get("METRICS_TOKEN_FILE")
    app_cfg = cfg.get("APP_CONFIG")
    if not path and app_cfg is not None and app_cfg.panel.metrics_token_file:
        path = str(app_cfg.resolve(app_cfg.panel.metrics_token_file))
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError:
            return None
    return None


METRICS = (
    ("appliance_calls", "calls", "Calls in the database."),
    ("appliance_calls_live", "calls_live", "Calls currently marked live."),
    ("appliance_utterances", "utterances", "Scored utterances in the database."),
    (
        "appliance_outbox_pending",
        "outbox_pending",
        "Outbox rows not yet acknowledged by the broker.",
    ),
    ("appliance_alerts_unacknowledged", "alerts_unacknowledged", "Alerts nobody acknowledged yet."),
    ("appliance_customers", "customers", "Customers with a relationship record."),
)


@bp.get("/metrics")
def metrics():
    token = metrics_token()
    auth = request.headers.get("Authorization", "")
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if not token or not given or not hmac.compare_digest(given.encode(), token.encode()):
        resp = jsonify(error="bearer token required")
        resp.status_code = 401
        resp.headers["WWW-Authenticate"] = 'Bearer realm="appliance-metrics"'
        return resp
    counts = queries.counts(pdb.get_db())
    lines = []
    for name, key, help_ in METRICS:
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge", f"{name} {counts[key]}"]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
