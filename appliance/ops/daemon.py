"""The appliance daemon (`appliance run --config PATH`): live capture of every configured position.

Start order (and the reverse on SIGTERM/SIGINT, Frigate-style):

  1. models      `load_engines(cfg)`: emotion model verified against its card, STT, numba warm-up
  2. store       the single SQLite writer (WAL, outbox in the same transaction)
  3. publisher   MQTT: retained status `online`, last will `offline`, CTI commands on cmd/call
  4. pipeline    VAD -> emotion/STT -> scoring -> store; live capture never blocks on it
  5. capture     one thread per position, reading its device(s) through `source_factory`
  then READY=1 to systemd, the health loop (settings `health`, MQTT `health`, Prometheus text
  on 127.0.0.1:9108) and WATCHDOG=1 while the pipeline is healthy.

Stop: STOPPING=1 -> capture threads end (open calls are closed, their last utterances queued)
-> pipeline drains its queue -> publisher flushes briefly and publishes `offline` -> store closes.

Calls open and end three ways (per position):

* auto: a call opens when the customer channel starts speaking after idle; it ends after
  `SILENCE_END_S` seconds of silence on both channels.
* CTI over MQTT (`<prefix>/v1/<box>/cmd/call`, schema cmd_call): `start` opens a call (or adopts
  the call that speech opened a moment before) and sets its metadata; such a call ends only on
  `end` (or after `MANAGED_SILENCE_END_S` of silence, a safety net for a lost `end`); `update`
  changes the metadata of the current call (or of the next one when the position is idle).
* the panel: it upserts a row in the `settings` table, key `cmd:<position>`, value = the same
  JSON object as the CTI command (`{"position": "pos-1", "action": "start", "customer": "...",
  "call_type": "support", "segment": "..."}`), `updated_at` = unix time. The daemon polls these
  rows every `PANEL_POLL_S` and applies each new (`updated_at`, value) once; rows older than the
  daemon's start are ignored. The daemon never deletes them.

Tunables that are not (yet) config keys are the constants below; the environment overrides a few
for tests and for systemd drop-ins: APPLIANCE_METRICS ("127.0.0.1:9108", "off"),
APPLIANCE_SILENCE_END_S, APPLIANCE_HEALTH_INTERVAL_S.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from appliance.config import AppConfig, PositionConfig
from appliance.ops.sdnotify import Notifier, watchdog_interval
from appliance.pipeline.orchestrator import CallMeta, Pipeline
from appliance.publish import contract
from appliance.segment.vad import Segmenter
from appliance.store.db import Store, connect

log = logging.getLogger(__name__)

SILENCE_END_S = 8.0
"""Auto mode: a call ends after this much silence on both channels."""
MANAGED_SILENCE_END_S = 600.0
"""A call opened by CTI/panel ends on `end`, or after this much silence (lost `end`)."""
PREROLL_S = 1.5
"""Audio kept while idle and fed to a call that speech opened, so its first words are scored
(speech must last `vad.min_speech` before it opens a call, which is known `vad.hangover`
later: a click or a cough does not). Must exceed hangover + min_speech + vad.preroll."""
RETRY_S = 3.0
"""Wait before reopening a capture device that failed or vanished (USB unplugged); doubles
while it stays away, up to 60 s."""
PANEL_POLL_S = 0.5
HEALTH_INTERVAL_S = 15.0
"""Health snapshot to settings `health` and Prometheus; published on MQTT every 4th time."""
HEALTH_PUBLISH_EVERY = 4
STALL_S = 30.0
"""The watchdog stops being fed when a capture thread or the writer made no progress this long."""
METRICS_DEFAULT = "127.0.0.1:9108"

SourceFactory = Callable[[PositionConfig], Any]
"""Builds a capture source for a position (`chunks()`, `close()`, `sample_rate`, `overruns`)."""


def default_source_factory(pos: PositionConfig):
    from appliance.capture.sources import SoundDeviceSource

    return SoundDeviceSource(
        pos.device,
        pos.samplerate,
        pos.channels.agent,
        pos.channels.customer,
        customer_device=pos.customer_device or None,
    )


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        log.warning("ignoring %s=%r (not a number)", name, os.environ.get(name))
        return default


@dataclass
class DaemonOptions:
    silence_end_s: float = SILENCE_END_S
    managed_silence_end_s: float = MANAGED_SILENCE_END_S
    preroll_s: float = PREROLL_S
    retry_s: float = RETRY_S
    panel_poll_s: float = PANEL_POLL_S
    health_interval_s: float = HEALTH_INTERVAL_S
    metrics: str = METRICS_DEFAULT
    """host:port of the Prometheus text endpoint; "off" disables it; port 0 = any free port."""

    @classmethod
    def from_env(cls, cfg: AppConfig | None = None) -> DaemonOptions:
        """The `[daemon]` config section; environment variables override it (systemd drop-ins, tests)."""
        d = cfg.daemon if cfg is not None else None
        silence = d.silence_end_s if d else SILENCE_END_S
        health = d.health_interval_s if d else HEALTH_INTERVAL_S
        return cls(
            silence_end_s=_env_float("APPLIANCE_SILENCE_END_S", silence),
            managed_silence_end_s=d.managed_silence_end_s if d else MANAGED_SILENCE_END_S,
            health_interval_s=_env_float("APPLIANCE_HEALTH_INTERVAL_S", health),
            metrics=os.environ.get("APPLIANCE_METRICS", d.metrics_listen if d else METRICS_DEFAULT),
        )


@dataclass
class StreamStats:
    """Per-position counters for health."""

    audio_s: float = 0.0
    feed_s: float = 0.0
    calls: int = 0
    source_overruns: int = 0
    device_errors: int = 0
    connected: bool = False
    last_progress: float = field(default_factory=time.monotonic)
    error: str = ""


class PositionWorker:
    """One position: reads its source, detects calls, feeds the pipeline, applies commands.

    All call state lives in this worker's thread; commands from MQTT and the panel are queued and
    applied between chunks, so no lock is needed around a call.
    """

    def __init__(
        self,
        pos: PositionConfig,
        cfg: AppConfig,
        pipeline: Pipeline,
        factory: SourceFactory,
        opts: DaemonOptions,
        stop: threading.Event,
    ):
        self.pos = pos
        self.cfg = cfg
        self.pipeline = pipeline
        self.factory = factory
        self.opts = opts
        self.stop_event = stop
        self.stats = StreamStats()
        self.commands: queue.Queue[dict] = queue.Queue(maxsize=64)
        self.call = None
        self.managed = False
        self.pending_meta: CallMeta | None = None
        self.source: Any = None
        self._silence_s = 0.0
        self._speech_run = 0.0
        self._failures = 0
        self._detector: Segmenter | None = None
        self._preroll: collections.deque = collections.deque()
        self._preroll_s = 0.0
        self.thread = threading.Thread(target=self._run, name=f"capture-{pos.id}", daemon=True)

    # -- public (other threads) ------------------------------------------------------------

    def submit(self, cmd: dict) -> None:
        try:
            self.commands.put_nowait(cmd)
        except queue.Full:
            log.warning("position %s: command queue full, %s dropped", self.pos.id, cmd)

    @property
    def in_call(self) -> bool:
        return self.call is not None

    # -- thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.source = self.factory(self.pos)
            except Exception as exc:
                self._device_failed(f"cannot open capture device {self.pos.device!r}: {exc}")
                continue
            self.stats.connected = True
            self.stats.error = ""
            log.info("position %s: capturing from %s", self.pos.id, self.pos.device)
            try:
                for chunk in self.source.chunks():
                    self._chunk(chunk)
                    if self.stop_event.is_set():
                        break
                else:
                    if not self.stop_event.is_set():
                        self._device_failed("capture source ended")
            except Exception as exc:
                log.exception("position %s: capture failed", self.pos.id)
                self._device_failed(f"capture failed: {exc}")
            finally:
                self.stats.connected = False
                self._close_source()
                self._end_call("source closed")
        while not self.commands.empty():  # commands that arrive during shutdown open nothing
            self.commands.get_nowait()

    def _close_source(self) -> None:
        src, self.source = self.source, None
        if src is not None:
            self.stats.source_overruns += int(getattr(src, "overruns", 0) or 0)
            try:
                src.close()
            except Exception:
                log.exception("position %s: closing the source", self.pos.id)

    def _device_failed(self, reason: str) -> None:
        self.stats.device_errors += 1
        self.stats.error = reason[:200]
        # back off (3, 6, 12 ... 60 s) while a device stays away; reset once it delivers audio
        self._failures += 1
        delay = min(self.opts.retry_s * 2 ** (self._failures - 1), max(self.opts.retry_s, 60.0))
        level = (
            logging.WARNING if self._failures <= 3 or self._failures % 20 == 0 else logging.DEBUG
        )
        log.log(level, "position %s: %s; retrying in %.0f s", self.pos.id, reason, delay)
        self._end_call("device lost")
        deadline = time.monotonic() + delay
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            self.stats.last_progress = time.monotonic()  # waiting is progress, not a stall
            self._apply_commands()
            self.stop_event.wait(0.1)

    # -- per chunk ---------------------------------------------------------------------------

    def _chunk(self, chunk: dict) -> None:
        now = time.monotonic()
        self.stats.last_progress = now
        self._failures = 0
        self._apply_commands()
        sr = self.source.sample_rate
        n = len(next(iter(chunk.values())))
        dur = n / sr
        self.stats.audio_s += dur
        if self.call is None:
            self._idle_chunk(chunk, sr, dur)
            return
        t = time.perf_counter()
        self.pipeline.feed(self.call, chunk)
        self.stats.feed_s += time.perf_counter() - t
        segs = self.call.segmenters
        if any(s.speaking for s in segs.values()):
            self._silence_s = 0.0
        else:
            self._silence_s += dur
        limit = self.opts.managed_silence_end_s if self.managed else self.opts.silence_end_s
        if self._silence_s >= limit:
            self._end_call(f"{self._silence_s:.1f} s of silence")

    def _idle_chunk(self, chunk: dict, sr: int, dur: float) -> None:
        self._preroll.append(chunk)
        self._preroll_s += dur
        keep = max(self.opts.preroll_s, self.cfg.vad.hangover + self.cfg.vad.min_speech + 0.5)
        while self._preroll_s - dur > keep and len(self._preroll) > 1:
            old = self._preroll.popleft()
            self._preroll_s -= len(next(iter(old.values()))) / sr
        if self._detector is None or self._detector.sr != sr:
            self._detector = Segmenter(sr, self.cfg.vad)
        t = time.perf_counter()
        self._detector.push(np.asarray(chunk["customer"], dtype=np.float32))
        self.stats.feed_s += time.perf_counter() - t
        # A click or a cough does not open a call: the detector stays "speaking" for the hangover
        # after any onset, so it must stay so for hangover + min_speech (speech >= min_speech).
        self._speech_run = self._speech_run + dur if self._detector.speaking else 0.0
        if self._speech_run >= self.cfg.vad.hangover + self.cfg.vad.min_speech:
            self._open_call(managed=False, why="customer speech")

    # -- calls -------------------------------------------------------------------------------

    def _meta(self, cmd: dict | None = None) -> CallMeta:
        base = self.pending_meta or CallMeta(position=self.pos.id, call_type=self.pos.call_type)
        if cmd:
            base = replace(
                base,
                customer_ref=cmd.get("customer", base.customer_ref),
                call_type=cmd.get("call_type", base.call_type),
                segment=cmd.get("segment", base.segment),
            )
        return base

    def _open_call(self, managed: bool, why: str, meta: CallMeta | None = None) -> None:
        sr = self.source.sample_rate if self.source is not None else 16000
        meta = meta or self._meta()
        self.pending_meta = None
        self.call = self.pipeline.open_call(meta, sr, source="live")
        self.managed = managed
        self._silence_s = 0.0
        self.stats.calls += 1
        log.info("position %s: call %s opened (%s)", self.pos.id, self.call.id, why)
        preroll, self._preroll, self._preroll_s = list(self._preroll), collections.deque(), 0.0
        self._detector = None
        self._speech_run = 0.0
        for c in preroll:
            self.pipeline.feed(self.call, c)

    def _end_call(self, why: str) -> None:
        call, self.call = self.call, None
        self.managed = False
        self._silence_s = 0.0
        self._detector = None
        if call is not None:
            log.info("position %s: call %s ends (%s)", self.pos.id, call.id, why)
            self.pipeline.close_call(call)

    def _apply_commands(self) -> None:
        while True:
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                return
            try:
                self._command(cmd)
            except Exception:
                log.exception("position %s: command %s failed", self.pos.id, cmd)

    def _command(self, cmd: dict) -> None:
        action = cmd.get("action", "update")
        log.info("position %s: command %s from %s", self.pos.id, action, cmd.get("_via", "?"))
        if action == "start":
            if self.call is not None and not self.managed:
                # speech opened the call a moment before the CTI event: adopt it
                self.managed = True
                self.pipeline.update_meta(self.call, self._meta_for_call(cmd))
            else:
                if self.call is not None:
                    self._end_call("new call started")
                self._open_call(managed=True, why="start command", meta=self._meta(cmd))
        elif action == "update":
            if self.call is not None:
                self.pipeline.update_meta(self.call, self._meta_for_call(cmd))
            else:
                self.pending_meta = self._meta(cmd)
        elif action == "end":
            self._end_call("end command")
            self.pending_meta = None

    def _meta_for_call(self, cmd: dict) -> CallMeta:
        m = self.call.meta
        new = CallMeta(
            position=m.position,
            customer_ref=cmd.get("customer", m.customer_ref),
            call_type=cmd.get("call_type", m.call_type),
            segment=cmd.get("segment", m.segment),
        )
        self.call.meta = new  # the writer thread applies it with the row; set here for later reads
        return new


class PanelCommands:
    """Polls `settings` rows `cmd:<position>` written by the panel (read-only connection)."""

    def __init__(self, db_path, since: float):
        self.db_path = db_path
        self.since = since
        self._seen: dict[str, tuple[float, str]] = {}
        self._db = None

    def poll(self) -> list[dict]:
        if self._db is None:
            self._db = connect(self.db_path, readonly=True)
        rows = self._db.execute(
            "SELECT key, value, updated_at FROM settings WHERE key LIKE 'cmd:%'"
        ).fetchall()
        out = []
        for key, value, updated_at in rows:
            stamp = (float(updated_at or 0.0), value or "")
            if stamp[0] < self.since or self._seen.get(key) == stamp:
                continue
            self._seen[key] = stamp
            try:
                cmd = contract.parse_command((value or "").encode("utf-8"))
            except contract.ContractError as exc:
                log.warning("panel command %s rejected: %s", key, exc)
                continue
            if cmd["position"] != key[4:]:
                log.warning("panel command %s names position %s", key, cmd["position"])
                continue
            out.append(cmd)
        return out

    def close(self) -> None:
        if self._db is not None:
            self._db.conn.close()
            self._db = None


class Daemon:
    """Owns the stages; `start()`, `run()` until stopped, `stop()`."""

    def __init__(
        self,
        cfg: AppConfig,
        engines: Any = None,
        source_factory: SourceFactory | None = None,
        options: DaemonOptions | None = None,
        notifier: Notifier | None = None,
    ):
        self.cfg = cfg
        self.engines = engines
        self.source_factory = source_factory or default_source_factory
        self.opts = options or DaemonOptions.from_env(cfg)
        self.notifier = notifier or Notifier()
        self.stop_event = threading.Event()
        self.started_at = time.time()
        self.store: Store | None = None
        self.publisher = None
        self.pipeline: Pipeline | None = None
        self.workers: dict[str, PositionWorker] = {}
        self.health = None
        self.metrics_server = None
        self.panel: PanelCommands | None = None
        self.db_path = cfg.resolve(cfg.paths.db)
        self.commands_applied = 0
        self.commands_rejected = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        from appliance.ops.health import HealthMonitor, start_metrics_server

        self.notifier.status("loading models")
        if self.engines is None:
            from appliance.ops.engines import load_engines

            self.engines = load_engines(self.cfg)
        self.notifier.status("opening the database")
        self.store = Store(
            self.db_path,
            box_id=self.cfg.box.id,
            min_free_mb=self.cfg.retention.min_free_mb,
            outbox_max_rows=self.cfg.mqtt.outbox_max_rows,
        )
        if self.cfg.mqtt.url:
            from appliance.ops.analysis import start_publisher

            self.publisher = start_publisher(
                self.cfg,
                self.db_path,
                self.cfg.mqtt.url,
                on_command=lambda c: self.dispatch(c, via="mqtt"),
            )
        self.pipeline = Pipeline(
            self.cfg,
            self.store,
            self.engines.emotion,
            self.engines.transcriber,
            on_stored=self.publisher.wake if self.publisher else None,
            block_when_full=False,  # live capture must never stall
        )
        self.health = HealthMonitor(self)
        if self.opts.metrics and self.opts.metrics != "off":
            try:
                self.metrics_server = start_metrics_server(self.opts.metrics, self.health)
            except OSError as exc:  # a busy port must not keep the calls from being analysed
                log.error("metrics endpoint %s not started: %s", self.opts.metrics, exc)
        self.panel = PanelCommands(self.db_path, since=self.started_at)
        for pos in self.cfg.positions:
            w = PositionWorker(
                pos, self.cfg, self.pipeline, self.source_factory, self.opts, self.stop_event
            )
            self.workers[pos.id] = w
            w.thread.start()
        log.info(
            "appliance running: %d position(s), db %s, mqtt %s",
            len(self.workers),
            self.db_path,
            self.cfg.mqtt.url or "off",
        )
        self.notifier.ready(f"capturing {len(self.workers)} position(s)")

    def dispatch(self, cmd: dict, via: str = "mqtt") -> None:
        """Route a validated cmd_call to its position (raises ValueError for an unknown one)."""
        w = self.workers.get(cmd.get("position", ""))
        if w is None:
            self.commands_rejected += 1
            raise ValueError(f"unknown position {cmd.get('position')!r}")
        self.commands_applied += 1
        w.submit({**cmd, "_via": via})

    def healthy(self) -> bool:
        """What the watchdog vouches for: writer alive, every capture thread alive and moving."""
        if self.pipeline is None:
            return False
        writer = getattr(self.pipeline, "_writer", None)
        if writer is not None and not writer.is_alive():
            return False
        now = time.monotonic()
        for w in self.workers.values():
            if not w.thread.is_alive() or now - w.stats.last_progress > STALL_S:
                return False
        return True

    def run(self) -> None:
        """Main loop until `stop_event`: panel commands, health, watchdog."""
        wd = watchdog_interval()
        next_wd = 0.0
        next_health = time.monotonic() + min(2.0, self.opts.health_interval_s)
        next_panel = 0.0
        n_health = 0
        while not self.stop_event.is_set():
            now = time.monotonic()
            if now >= next_panel:
                next_panel = now + self.opts.panel_poll_s
                try:
                    for cmd in self.panel.poll():
                        try:
                            self.dispatch(cmd, via="panel")
                        except ValueError as exc:
                            log.warning("panel command rejected: %s", exc)
                except Exception:
                    log.exception("polling panel commands")
            if now >= next_health:
                next_health = now + self.opts.health_interval_s
                try:
                    self.health.collect_and_store(publish=n_health % HEALTH_PUBLISH_EVERY == 0)
                    n_health += 1
                except Exception:
                    log.exception("health snapshot failed")
            if wd is not None and now >= next_wd:
                if self.healthy():
                    self.notifier.watchdog()
                    next_wd = now + wd
                else:
                    log.error("pipeline unhealthy: watchdog not fed")
                    next_wd = now + 1.0
            self.stop_event.wait(min(0.25, self.opts.panel_poll_s))

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Reverse order: capture -> pipeline (drain) -> publisher -> store."""
        self.notifier.stopping("draining")
        self.stop_event.set()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        for w in self.workers.values():
            if w.thread.is_alive():
                w.thread.join(10)
            if w.thread.is_alive():
                log.error("position %s: capture thread did not stop", w.pos.id)
        if self.pipeline is not None:
            self.pipeline.stop()
        if self.health is not None and self.store is not None:
            with contextlib.suppress(Exception):
                self.health.collect_and_store(publish=False)
        if self.health is not None:
            self.health.close()
        if self.panel is not None:
            self.panel.close()
        if self.publisher is not None:
            if self.publisher.connected.is_set():
                self.publisher.flush(flush_timeout)
            self.publisher.stop()
        if self.store is not None:
            self.store.close()
        self.notifier.close()
        log.info("appliance stopped")


def run_daemon(
    cfg: AppConfig,
    engines: Any = None,
    source_factory: SourceFactory | None = None,
    options: DaemonOptions | None = None,
    stop_event: threading.Event | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or `stop_event`); 0 on a clean stop, 1 when start failed."""
    d = Daemon(cfg, engines=engines, source_factory=source_factory, options=options)
    if stop_event is not None:
        d.stop_event = stop_event
    previous = {}
    if threading.current_thread() is threading.main_thread():

        def _on_signal(signum, frame) -> None:
            log.info("signal %s: stopping", signal.Signals(signum).name)
            d.stop_event.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _on_signal)
    rc = 0
    try:
        try:
            d.start()
        except Exception as exc:
            log.exception("start failed")
            print(f"error: appliance did not start: {exc}", file=sys.stderr, flush=True)
            rc = 1
        else:
            d.run()
    finally:
        d.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return rc


def health_json(db_path) -> dict | None:
    """The last health snapshot the daemon wrote (for the panel and `appliance` tools)."""
    db = connect(db_path, readonly=True)
    try:
        row = db.execute("SELECT value FROM settings WHERE key = 'health'").fetchone()
        return json.loads(row[0]) if row else None
    finally:
        db.conn.close()
