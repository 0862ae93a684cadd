"""The Prometheus text endpoint of the daemon (default 127.0.0.1:9108): the last health snapshot
in exposition format 0.0.4. The panel's authenticated /metrics is separate.

With a token (`[daemon] metrics_token_file`) every request needs `Authorization: Bearer TOKEN`;
without one the endpoint belongs on loopback, and binding it elsewhere logs a warning."""

from __future__ import annotations

import hmac
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from appliance.config import is_loopback

log = logging.getLogger(__name__)


def _esc(v: Any) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(snap: dict | None) -> str:
    """Exposition format 0.0.4 of a snapshot."""
    if snap is None:
        return "# no health snapshot yet\nappliance_up 1\n"
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict, Any]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if value is None:
                continue
            if isinstance(value, bool):
                value = int(value)
            lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

    g = "gauge"
    metric("appliance_up", g, "The daemon is running.", [({}, 1)])
    metric(
        "appliance_uptime_seconds", g, "Seconds since the daemon started.", [({}, snap["uptime_s"])]
    )
    metric("appliance_cpu_percent", g, "CPU busy percent (all cores).", [({}, snap["cpu_percent"])])
    metric("appliance_load1", g, "1-minute load average.", [({}, snap["load1"])])
    metric(
        "appliance_temperature_celsius", g, "Hottest thermal zone.", [({}, snap["temperature_c"])]
    )
    metric("appliance_rtf", g, "Processing seconds per audio second.", [({}, snap["rtf"])])
    metric("appliance_queue_depth", g, "Jobs waiting for the writer.", [({}, snap["queue_depth"])])
    metric(
        "appliance_overruns_total",
        "counter",
        "Dropped utterances and input overflows.",
        [({}, snap["overruns"])],
    )
    metric(
        "appliance_outbox_pending",
        g,
        "Outbox rows not yet acknowledged.",
        [({}, snap["outbox_pending"])],
    )
    metric(
        "appliance_disk_free_bytes",
        g,
        "Free bytes on the database's file system.",
        [({}, None if snap["disk_free_mb"] is None else int(snap["disk_free_mb"] * 1e6))],
    )
    metric(
        "appliance_broker_connected",
        g,
        "1 while connected to the MQTT broker.",
        [({}, snap["broker_connected"])],
    )
    metric("appliance_active_calls", g, "Calls in progress.", [({}, snap["active_calls"])])
    metric(
        "appliance_transcripts_suspended",
        g,
        "1 while transcripts are not stored (disk low).",
        [({}, snap.get("transcripts_suspended", False))],
    )
    metric(
        "appliance_utterances_total",
        "counter",
        "Utterances scored.",
        [({}, snap.get("utterances", 0))],
    )
    metric(
        "appliance_latency_p95_seconds",
        g,
        "p95 utterance end to committed scores.",
        [({}, snap.get("latency_p95_s"))],
    )
    streams = snap.get("streams", [])
    metric(
        "appliance_stream_rtf",
        g,
        "Capture-thread seconds per audio second, per position.",
        [({"position": s["position"]}, s["rtf"]) for s in streams],
    )
    metric(
        "appliance_stream_connected",
        g,
        "1 while the position's device is open.",
        [({"position": s["position"]}, s["connected"]) for s in streams],
    )
    metric(
        "appliance_stream_overruns_total",
        "counter",
        "Input overflows per position.",
        [({"position": s["position"]}, s["overruns"]) for s in streams],
    )
    metric(
        "appliance_stream_calls_total",
        "counter",
        "Calls opened per position.",
        [({"position": s["position"]}, s["calls"]) for s in streams],
    )
    metric(
        "appliance_alarm",
        g,
        "1 for each raised alarm.",
        [({"alarm": a}, 1) for a in snap.get("alarms", [])],
    )
    stt = snap.get("stt") or {}
    emo = snap.get("emotion_model") or {}
    metric(
        "appliance_info",
        g,
        "Software, model and STT versions.",
        [
            (
                {
                    "software_version": snap.get("software_version", ""),
                    "model_version": emo.get("version") or "",
                    "stt_engine": stt.get("engine") or "none",
                    "stt_model": stt.get("model_version") or "",
                },
                1,
            )
        ],
    )
    return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    monitor: Any

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        token = self.server.token  # type: ignore[attr-defined]
        if token is not None:
            auth = self.headers.get("Authorization", "")
            given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            if not given or not hmac.compare_digest(given.encode(), token.encode()):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Bearer realm="appliance-metrics"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        if self.path.split("?")[0] not in ("/metrics", "/"):
            self.send_error(404)
            return
        body = prometheus_text(self.server.monitor.last).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics: " + format, *args)


def start_metrics_server(
    address: str, monitor: Any, token: str | None = None
) -> ThreadingHTTPServer:
    """Serve `monitor.last` as Prometheus text on `host:port`; with `token`, only to requests
    bearing it. Off loopback without a token: served, with a warning in the log."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not is_loopback(host) and not token:
        log.warning(
            "metrics endpoint on %s without a token: anyone who reaches it reads the box's "
            "health; keep it on 127.0.0.1 or set daemon.metrics_token_file",
            host,
        )
    server = ThreadingHTTPServer((host, int(port)), _Handler)
    server.daemon_threads = True
    server.monitor = monitor  # type: ignore[attr-defined]
    server.token = token or None  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s:%s/metrics", *server.server_address[:2])
    return server
