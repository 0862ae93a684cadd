"""gunicorn entry: `gunicorn -c python:appliance.panel.gunicorn_conf 'appliance.panel.wsgi:app'`
(the systemd unit: one worker, gthread, host, port, TLS and threads from the config's [panel]).

Environment:
  APPLIANCE_CONFIG   appliance config (TOML): database path, positions, rules, metrics token file
  APPLIANCE_DB       database file (overrides the config's paths.db)
  APPLIANCE_PANEL_TLS  "0" when gunicorn serves plain HTTP (default "1": Secure cookies)
  APPLIANCE_METRICS_TOKEN / APPLIANCE_METRICS_TOKEN_FILE   bearer token for /metrics
  APPLIANCE_PANEL_SECRET_FILE  session secret (default: panel-secret.key next to the database)
"""

from __future__ import annotations

import os


def app_from_env():
    from appliance.panel import create_app

    cfg = None
    if os.environ.get("APPLIANCE_CONFIG"):
        from appliance.config import load_config

        cfg = load_config(os.environ["APPLIANCE_CONFIG"])
    db = os.environ.get("APPLIANCE_DB") or (str(cfg.resolve(cfg.paths.db)) if cfg else None)
    if not db:
        raise RuntimeError("set APPLIANCE_DB or APPLIANCE_CONFIG for the panel")
    tls = os.environ.get("APPLIANCE_PANEL_TLS", "1").lower() not in ("0", "false", "no")
    return create_app({"DB_PATH": db, "TLS": tls, "APP_CONFIG": cfg})


app = app_from_env()
