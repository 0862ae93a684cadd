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
  write_lock_max_s  the longest this process held SQLite's write lock (a transaction held
               longer than 1 s is logged with its thread); not published.
  alarms       outbox_full (pending > mqtt.outbox_max_rows), disk_low (free < retention.min_free_mb
               or transcripts suspended), overrun (new overruns in the interval), temperature
               (>= TEMP_ALARM_C), broker_down (a broker is configured and not connected).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from appliance import __version__
from appliance.capture.position import StreamSnapshot
from appliance.config import AppConfig
from appliance.publish import contract
from appliance.store import settings
from appliance.store.connection import LOCK_STATS, StorageError, connect
from appliance.store.outbox import pending_count
from appliance.store.writer import Store

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


@dataclass(frozen=True)
class RuntimeSnapshot:
    """What health needs to know of the running daemon, read in one call."""

    streams: list[StreamSnapshot] = field(default_factory=list)
    utterances: int = 0
    pipeline_overruns: int = 0
    processing_s: float = 0.0
    """Emotion CPU seconds plus STT decode seconds since start."""
    latencies: list[float] = field(default_factory=list)
    """The newest utterance end -> commit latencies (s)."""
    queue_depth: int = 0
    transcripts_suspended: bool = False
    broker_connected: bool = False
    commands_applied: int = 0
    commands_rejected: int = 0
    write_failures: int = 0
    """Utterances and call rows the database refused (full disk, I/O error): lost."""


class HealthSource(Protocol):
    """The daemon as health sees it: fixed facts and one snapshot call."""

    cfg: AppConfig
    db_path: Path
    started_at: float

    def runtime_snapshot(self) -> RuntimeSnapshot: ...

    def engines_info(self) -> dict: ...


def engines_info(engines: Any) -> dict:
    """Emotion model and STT engine details for health, from loaded engines (or None)."""
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


class HealthMonitor:
    """Builds snapshots of a `HealthSource` and stores them through its `Store`."""

    def __init__(self, source: HealthSource, store: Store):
        self.src = source
        self.store = store
        self.cpu = CpuMeter()
        self._lock = threading.Lock()
        self._prev: dict[str, Any] = {}
        self._prev_t = time.monotonic()
        self.last: dict | None = None
        self.store_failures = 0
        """Snapshots the database refused (kept in `last` all the same)."""
        self._last_alarms: list[str] | None = None
        self._read_db = None

    def _outbox_pending(self) -> int:
        if self._read_db is None:
            self._read_db = connect(self.src.db_path, readonly=True)
        return pending_count(self._read_db)

    def _streams(self, rt: RuntimeSnapshot, dt: float) -> list[dict]:
        out = []
        for s in rt.streams:
            prev = self._prev.get(f"stream:{s.position}", (0.0, 0.0))
            d_audio, d_feed = s.audio_s - prev[0], s.feed_s - prev[1]
            self._prev[f"stream:{s.position}"] = (s.audio_s, s.feed_s)
            out.append(
                {
                    "position": s.position,
                    "device": s.device,
                    "connected": bool(s.connected),
                    "in_call": s.in_call,
                    "call_id": s.call_id,
                    "calls": s.calls,
                    "audio_s": round(s.audio_s, 1),
                    "audio_rate": round(d_audio / dt, 3),
                    "rtf": round(d_feed / d_audio, 4) if d_audio > 0 else None,
                    "overruns": s.overruns,
                    "device_errors": s.device_errors,
                    "error": s.error or None,
                }
            )
        return out

    # -- snapshot ----------------------------------------------------------------------------

    def collect(self) -> dict:
        """The full snapshot (settings `health`); `message_body` picks the published part."""
        src = self.src
        with self._lock:
            rt = src.runtime_snapshot()
            now = time.monotonic()
            dt = max(now - self._prev_t, 1e-6)
            streams = self._streams(rt, dt)
            audio_total = sum(s.audio_s for s in rt.streams)
            proc = sum(s.feed_s for s in rt.streams) + rt.processing_s
            source_overruns = sum(s.overruns for s in rt.streams)
            prev_audio, prev_proc = self._prev.get("total", (0.0, 0.0))
            d_audio, d_proc = audio_total - prev_audio, proc - prev_proc
            self._prev["total"] = (audio_total, proc)
            rtf = round(d_proc / d_audio, 4) if d_audio > 0 else None
            overruns = rt.pipeline_overruns + source_overruns
            new_overruns = overruns - self._prev.get("overruns", 0)
            self._prev["overruns"] = overruns
            self._prev_t = now

            lat = rt.latencies[-200:]
            latency_p95 = round(sorted(lat)[int(0.95 * (len(lat) - 1))], 3) if lat else None
            try:
                pending = self._outbox_pending()
            except Exception as exc:  # a read never fails the snapshot
                log.warning("outbox count failed: %s", exc)
                pending = 0
            disk_free = _disk_free_mb(Path(src.db_path).parent)
            temp = read_temperature()
            info = src.engines_info()
            cfg = src.cfg
            alarms = []
            if pending > cfg.mqtt.outbox_max_rows:
                alarms.append("outbox_full")
            suspended = rt.transcripts_suspended
            if suspended or (disk_free is not None and disk_free < cfg.retention.min_free_mb):
                alarms.append("disk_low")
            if new_overruns > 0:
                alarms.append("overrun")
            if temp is not None and temp >= TEMP_ALARM_C:
                alarms.append("temperature")
            if cfg.mqtt.url and not rt.broker_connected:
                alarms.append("broker_down")
            snap = {
                "ts": round(time.time(), 3),
                "box_id": cfg.box.id,
                "uptime_s": round(max(0.0, time.time() - src.started_at), 1),
                "cpu_percent": self.cpu.percent(),
                "load1": _load1(),
                "temperature_c": temp,
                "rtf": rtf,
                "queue_depth": int(rt.queue_depth),
                "overruns": int(overruns),
                "pipeline_overruns": int(rt.pipeline_overruns),
                "utterances": int(rt.utterances),
                "latency_p95_s": latency_p95,
                "outbox_pending": int(pending),
                "disk_free_mb": disk_free,
                "broker_connected": rt.broker_connected,
                "mqtt_enabled": bool(cfg.mqtt.url),
                "transcripts_suspended": suspended,
                "active_calls": sum(1 for s in rt.streams if s.in_call),
                "streams": streams,
                "stt": info["stt"],
                "emotion_model": info["emotion"],
                "software_version": __version__,
                "commands_applied": int(rt.commands_applied),
                "commands_rejected": int(rt.commands_rejected),
                "write_failures": int(rt.write_failures),
                "write_lock_max_s": round(LOCK_STATS.max_s, 3),
                "write_lock_slow": LOCK_STATS.slow,
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
        """Snapshot -> settings `health` (+ a `health` outbox message) in one transaction.

        A database that refuses the write (locked past the busy timeout, full) costs this one
        snapshot's row, not the snapshot: `last` (and /metrics) still has it."""
        snap = self.collect()
        messages = []
        if publish:
            msg = contract.new_message("health", self.src.cfg.box.id, self.message_body(snap))
            messages.append(("health", msg))
        try:
            self.store.write(settings_json={settings.HEALTH: snap}, messages=messages)
        except StorageError as exc:
            self.store_failures += 1
            log.warning("health snapshot not stored: %s", exc)
        if snap["alarms"] and snap["alarms"] != self._last_alarms:
            log.warning("health alarms: %s", ", ".join(snap["alarms"]))
        self._last_alarms = snap["alarms"]
        return snap

    def close(self) -> None:
        if self._read_db is not None:
            self._read_db.conn.close()
            self._read_db = None
