"""gunicorn settings for the systemd unit: `gunicorn -c python:appliance.panel.gunicorn_conf
'appliance.panel.wsgi:app'`. Host, port, certificate and key come from the config's [panel]
section ($APPLIANCE_CONFIG), threads from panel.max_streams (`serving.gunicorn_options`).
APPLIANCE_PANEL_TLS=0 serves plain HTTP (behind a TLS proxy only)."""

from __future__ import annotations

import os
import sys

from appliance.config import ConfigError, load_config
from appliance.panel.serving import gunicorn_options

try:
    _cfg = load_config(os.environ["APPLIANCE_CONFIG"])
except KeyError:
    sys.exit("gunicorn_conf: set APPLIANCE_CONFIG to the appliance config (TOML)")
except ConfigError as exc:
    sys.exit(f"gunicorn_conf: {os.environ['APPLIANCE_CONFIG']}: {exc}")
_p = _cfg.panel
_tls = os.environ.get("APPLIANCE_PANEL_TLS", "1").lower() not in ("0", "false", "no")
if _tls and not (_p.cert_file and _p.key_file):
    sys.exit("gunicorn_conf: panel.cert_file and panel.key_file are needed for TLS")
_opts = gunicorn_options(
    _p.host,
    _p.port,
    str(_cfg.resolve(_p.cert_file)) if _tls else None,
    str(_cfg.resolve(_p.key_file)) if _tls else None,
    _p.max_streams,
)
bind = _opts["bind"]
workers = _opts["workers"]
worker_class = _opts["worker_class"]
threads = _opts["threads"]
timeout = _opts["timeout"]
graceful_timeout = _opts["graceful_timeout"]
accesslog = _opts["accesslog"]
logger_class = _opts["logger_class"]
forwarded_allow_ips = _opts["forwarded_allow_ips"]
certfile = _opts.get("certfile")
keyfile = _opts.get("keyfile")
