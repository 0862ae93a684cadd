"""Health of the box: CPU, temperature, real-time factor, queues, outbox, disk, broker, models.

One snapshot every `HEALTH_INTERVAL_S` (appliance.ops.daemon) goes three ways:

* the `settings` table, key `health`: the full snapshot as JSON (per-position streams, engine and
  model details) for the panel, which reads it from SQLite;
* the MQTT `health` topic through the outbox (`contract.new_message("health", ...)` in the same
  transaction as the settings row): only the fields of appliance/schemas/health.json;
* a Prometheus text endpoint bound to localhost (`start_metrics_server`, default 127.0.0.1:9108;
  the panel's authenticated /metrics is separate).

Definitions:
  rtf          processing seconds (VAD feed + emotion + STT thread time) per second of audio
               captured on all positions, over the last interval; < 1 keeps up.
  streams[].rtf  capture-thread seconds (VAD, call detection) per audio second of that position.
  overruns     utterances the pipeline dropped (queue full) + input overflows PortAudio reported.
  alarms       outbox_full (pending > mqtt.outbox_max_rows), disk_low (free < retention.min_free_mb
               or transcripts suspended), overrun (new overruns in the interval), temperature
               (>= TEMP_ALARM_C), broker_down (a broker is configured and not connected).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.publish import contract

log = logging.getLogger(__name__)

TEMP_ALARM_C = 80.0
THERMAL_GLOB = "/sys/class/thermal/thermal_zone*/temp"
_ID_RE = re.compile(r"[^A-Za-z0-9_.:-]")


def read_temperature(pattern: str = THERMAL_GLOB) -> float | None:
    """Hottest thermal zone in °C (the SoC on a Pi/Jetson), None where there is none."""
    temps = []
    for path in glob.glob(pattern):
        try:
            temps.append(int(Path(path).read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    temps = [t for t in temps if -40.0 < t < 150.0]
    return round(max(temps), 1) if temps else None


class CpuMeter:
    """CPU busy percent between two calls, from /proc/stat."""

    def __init__(self, path: str = "/proc/stat"):
        self.path = path
        self._last = self._read()

    def _read(self) -> tuple[int, int] | None:
        try:
            with open(self.path) as f:
                parts = f.readline().split()
        except OSError:
            return None
        if not parts or parts[0] != "cpu":
            return None
        values = [int(v) for v in parts[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values), idle

    def percent(self) -> float | None:
        now = self._read()
        last, self._last = self._last, now
        if now is None or last is None or now[0] <= last[0]:
            return None
        total, idle = now[0] - last[0], now[1] - last[1]
        return round(100.0 * (1.0 - idle / total), 1)


def _load1() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _disk_free_mb(path: Path) -> float | None:
    try:
        return round(shutil.disk_usage(path).free / 1e6, 1)
    except OSError:
        return None


def _safe_id(value: Any, default: str = "unknown") -> str:
    s = _ID_RE.sub("_", str(value or ""))[:64]
    return s or default


class HealthMonitor:
    """Builds snapshots from a running `appliance.ops.daemon.Daemon` (or anything shaped like it)."""

    def __init__(self, daemon: Any):
        self.d = daemon
        self.cpu = CpuMeter()
        self._lock = threading.Lock()
        self._prev: dict[str, Any] = {}
        self._prev_t = time.monotonic()
        self.last: dict | None = None
        self._read_db = None

    # -- pieces ------------------------------------------------------------------------------

    def _outbox_pending(self) -> int:
        from appliance.store.db import connect

        if self._read_db is None:
            self._read_db = connect(self.d.db_path, readonly=True)
        row = self._read_db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()
        return int(row[0] or 0)

    def engines_info(self) -> dict:
        engines = getattr(self.d, "engines", None)
        emotion = getattr(engines, "emotion", None)
        model_info = dict(getattr(emotion, "info", {}) or {})
        transcriber = getattr(engines, "transcriber", None)
        if transcriber is None:
            stt = {"engine": "none", "model_version": ""}
        else:
            try:
                from appliance.stt.engines import engine_info

                stt = engine_info(transcriber)
            except Exception:  # an exotic transcriber must not break health
                stt = {"engine": getattr(transcriber, "name", "none"), "model_version": ""}
        return {
            "emotion": {k: model_info.get(k) for k in ("name", "version", "sha256", "providers")},
            "stt": {k: stt.get(k) for k in ("engine", "model_version", "sha256")},
        }

    # -- snapshot ----------------------------------------------------------------------------

    def collect(self) -> dict:
        """The full snapshot (settings `health`); `message_body` picks the published part."""
        d = self.d
        with self._lock:
            now = time.monotonic()
            dt = max(now - self._prev_t, 1e-6)
            pipe = d.pipeline
            pstats = pipe.stats if pipe is not None else None
            streams = []
            audio_total = feed_total = 0.0
            source_overruns = 0
            for pid, w in d.workers.items():
                s = w.stats
                src = w.source
                cur = int(getattr(src, "overruns", 0) or 0) if src is not None else 0
                src_over = s.source_overruns + cur
                source_overruns += src_over
                audio_total += s.audio_s
                feed_total += s.feed_s
                prev = self._prev.get(f"stream:{pid}", (0.0, 0.0))
                d_audio, d_feed = s.audio_s - prev[0], s.feed_s - prev[1]
                self._prev[f"stream:{pid}"] = (s.audio_s, s.feed_s)
                streams.append(
                    {
                        "position": pid,
                        "device": w.pos.device,
                        "connected": bool(s.connected),
                        "in_call": w.in_call,
                        "call_id": w.call.id if w.call is not None else None,
                        "calls": s.calls,
                        "audio_s": round(s.audio_s, 1),
                        "audio_rate": round(d_audio / dt, 3),
                        "rtf": round(d_feed / d_audio, 4) if d_audio > 0 else None,
                        "overruns": src_over,
                        "device_errors": s.device_errors,
                        "error": s.error or None,
                    }
                )
            proc = feed_total + (pstats.emotion_s + pstats.stt_s if pstats else 0.0)
            prev_audio, prev_proc = self._prev.get("total", (0.0, 0.0))
            d_audio, d_proc = audio_total - prev_audio, proc - prev_proc
            self._prev["total"] = (audio_total, proc)
            rtf = round(d_proc / d_audio, 4) if d_audio > 0 else None
            pipe_over = pstats.overruns if pstats else 0
            overruns = pipe_over + source_overruns
            new_overruns = overruns - self._prev.get("overruns", 0)
            self._prev["overruns"] = overruns
            self._prev_t = now

            lat = list(pstats.latencies)[-200:] if pstats else []
            latency_p95 = round(sorted(lat)[int(0.95 * (len(lat) - 1))], 3) if lat else None
            try:
                pending = self._outbox_pending()
            except Exception:
                log.exception("outbox count failed")
                pending = 0
            store = d.store
            disk_free = _disk_free_mb(Path(d.db_path).parent)
            temp = read_temperature()
            pub = d.publisher
            broker_connected = bool(pub is not None and pub.connected.is_set())
            info = self.engines_info()
            cfg = d.cfg
            alarms = []
            if pending > cfg.mqtt.outbox_max_rows:
                alarms.append("outbox_full")
            suspended = bool(getattr(store, "transcripts_suspended", False))
            if suspended or (disk_free is not None and disk_free < cfg.retention.min_free_mb):
                alarms.append("disk_low")
            if new_overruns > 0:
                alarms.append("overrun")
            if temp is not None and temp >= TEMP_ALARM_C:
                alarms.append("temperature")
            if cfg.mqtt.url and not broker_connected:
                alarms.append("broker_down")
            snap = {
                "ts": round(time.time(), 3),
                "box_id": cfg.box.id,
                "uptime_s": round(max(0.0, time.time() - d.started_at), 1),
                "cpu_percent": self.cpu.percent(),
                "load1": _load1(),
                "temperature_c": temp,
                "rtf": rtf,
                "queue_depth": int(pipe.queue_depth) if pipe is not None else 0,
                "overruns": int(overruns),
                "pipeline_overruns": int(pipe_over),
                "utterances": int(pstats.utterances) if pstats else 0,
                "latency_p95_s": latency_p95,
                "outbox_pending": int(pending),
                "disk_free_mb": disk_free,
                "broker_connected": broker_connected,
                "mqtt_enabled": bool(cfg.mqtt.url),
                "transcripts_suspended": suspended,
                "active_calls": sum(1 for w in d.workers.values() if w.in_call),
                "streams": streams,
                "stt": info["stt"],
                "emotion_model": info["emotion"],
                "software_version": __version__,
                "commands_applied": int(getattr(d, "commands_applied", 0)),
                "commands_rejected": int(getattr(d, "commands_rejected", 0))
                + int(getattr(pub, "commands_rejected", 0) if pub is not None else 0),
                "alarms": alarms,
            }
            self.last = snap
            return snap

    @staticmethod
    def message_body(snap: dict) -> dict:
        """The published subset (appliance/schemas/health.json), without the envelope."""
        stt_engine = (snap.get("stt") or {}).get("engine") or "none"
        body = {
            "uptime_s": snap["uptime_s"],
            "cpu_percent": snap["cpu_percent"],
            "load1": snap["load1"],
            "temperature_c": snap["temperature_c"],
            "rtf": snap["rtf"],
            "queue_depth": snap["queue_depth"],
            "overruns": snap["overruns"],
            "outbox_pending": snap["outbox_pending"],
            "disk_free_mb": snap["disk_free_mb"],
            "broker_connected": snap["broker_connected"],
            "stt_engine": stt_engine if stt_engine in ("vosk", "whisper", "none") else "none",
            "software_version": _safe_id(snap["software_version"]),
            "active_calls": snap["active_calls"],
            "alarms": list(snap["alarms"])[:16],
        }
        version = (snap.get("emotion_model") or {}).get("version")
        if version:
            body["model_version"] = _safe_id(version)
        return body

    def collect_and_store(self, publish: bool = True) -> dict:
        """Snapshot -> settings `health` (+ a `health` outbox message) in one transaction."""
        snap = self.collect()
        messages = []
        if publish:
            msg = contract.new_message("health", self.d.cfg.box.id, self.message_body(snap))
            messages.append(("health", msg))
        self.d.store.write(
            upserts={
                "settings": [
                    {"key": "health", "value": json.dumps(snap), "updated_at": time.time()}
                ]
            },
            messages=messages,
        )
        if snap["alarms"] and snap["alarms"] != getattr(self, "_last_alarms", None):
            log.warning("health alarms: %s", ", ".join(snap["alarms"]))
        self._last_alarms = snap["alarms"]
        return snap

    def close(self) -> None:
        if self._read_db is not None:
            self._read_db.conn.close()
            self._read_db = None


# -- Prometheus text format ----------------------------------------------------------------------


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
    monitor: HealthMonitor

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
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


def start_metrics_server(address: str, monitor: HealthMonitor) -> ThreadingHTTPServer:
    """Serve Prometheus text on `host:port` (meant for 127.0.0.1) in a daemon thread."""
    host, _, port = address.rpartition(":")
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), _Handler)
    server.daemon_threads = True
    server.monitor = monitor  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s:%s/metrics", *server.server_address[:2])
    return server
