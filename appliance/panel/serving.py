"""How the panel is served: gunicorn options shared by `appliance web` and the systemd unit
(`gunicorn -c python:appliance.panel.gunicorn_conf`), and access logs without customer
references (paths under /customers/ and query strings are masked: the journal is not the place
for them; the audit log records who did what)."""

from __future__ import annotations

import re

from gunicorn import glogging
from werkzeug.serving import WSGIRequestHandler

from appliance.panel.live_stream import PAGE_THREADS

_CUSTOMER = re.compile(r"(/customers/)[^/?#\s]+")
_QUERY = re.compile(r"\?[^\s\"]*")


def redact(text: str | None) -> str | None:
    """A request line, path or URL with customer references and query strings masked."""
    if not text or text == "-":
        return text
    return _QUERY.sub("?-", _CUSTOMER.sub(r"\1-", text))


class RedactingLogger(glogging.Logger):
    """gunicorn's logger with the request line, path, query and referer redacted."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "f", "{referer}i"):
            if key in atoms:
                atoms[key] = redact(atoms[key])
        if atoms.get("q"):
            atoms["q"] = "-"
        return atoms


class RedactingRequestHandler(WSGIRequestHandler):
    """werkzeug's handler (the demo's server) with the same redaction."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = getattr(self, "path", None)
        if path is not None:
            self.path = redact(path)
        try:
            super().log_request(code, size)
        finally:
            if path is not None:
                self.path = path


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gunicorn_options(
    host: str, port: int, certfile: str | None, keyfile: str | None, max_streams: int
) -> dict:
    """One worker (the login limiter and the stream slots live in its memory), gthread with
    PAGE_THREADS for pages and the API plus one thread per allowed live stream."""
    opts = {
        "bind": [bind_address(host, port)],
        "workers": 1,
        "worker_class": "gthread",
        "threads": PAGE_THREADS + max_streams,
        "timeout": 60,
        "graceful_timeout": 5,
        "accesslog": "-",
        "logger_class": "appliance.panel.serving.RedactingLogger",
        "forwarded_allow_ips": "",
    }
    if certfile:
        opts.update(certfile=certfile, keyfile=keyfile)
    return opts
