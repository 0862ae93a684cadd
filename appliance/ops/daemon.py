"""The appliance daemon (`appliance run --config PATH`): live capture of every configured position.

Start order (and the reverse on SIGTERM/SIGINT, Frigate-style):

  1. models      `load_engines(cfg)`: emotion model verified against its card, STT, numba warm-up
  2. store       the single SQLite writer (WAL, outbox in the same transaction)
  3. publisher   MQTT: retained status `online`, last will `offline`, CTI commands on cmd/call
                 (it connects once the positions take commands, just before capture starts)
  4. pipeline    VAD -> emotion/STT -> scoring -> store; live capture never blocks on it
  5. capture     one thread per position, reading its device(s) through `source_factory`
  then READY=1 to systemd, the health loop (settings `health`, MQTT `health`, Prometheus text
  on 127.0.0.1:9108) and WATCHDOG=1 while the pipeline is healthy.

Stop: STOPPING=1 -> capture threads end (open calls are closed, their last utterances queued)
-> pipeline drains its queue -> publisher flushes briefly and publishes `offline` -> store closes.

Calls open and end per position (`appliance.capture.position`): on customer speech, or on call
commands from the CTI over MQTT and from the panel, which take one path
(`appliance.publish.commands`): the publisher's subscription and the panel's `commands` rows
both end in `CommandRouter.submit`.

Tunables that are not (yet) config keys are the constants below; the environment overrides a few
for tests and for systemd drop-ins: APPLIANCE_METRICS ("127.0.0.1:9108", "off"),
APPLIANCE_SILENCE_END_S, APPLIANCE_HEALTH_INTERVAL_S.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from appliance.capture.position import (
    MANAGED_SILENCE_END_S,
    PREROLL_S,
    RETRY_S,
    SILENCE_END_S,
    PositionTiming,
    PositionWorker,
    SourceFactory,
    default_source_factory,
)
from appliance.config import AppConfig
from appliance.ops.health import HealthMonitor, RuntimeSnapshot, engines_info
from appliance.ops.metrics import start_metrics_server
from appliance.ops.sdnotify import Notifier, watchdog_interval
from appliance.pipeline.orchestrator import Pipeline
from appliance.publish.commands import CommandRouter, PanelCommandReader
from appliance.store import settings
from appliance.store.connection import connect
from appliance.store.overrides import effective_config
from appliance.store.writer import Store

log = logging.getLogger(__name__)

PANEL_POLL_S = 0.5
HEALTH_INTERVAL_S = 15.0
"""Health snapshot to settings `health` and Prometheus; published on MQTT every 4th time."""
HEALTH_PUBLISH_EVERY = 4
STALL_S = 30.0
"""The watchdog stops being fed when a capture thread or the writer made no progress this long."""
METRICS_DEFAULT = "127.0.0.1:9108"
GIL_SWITCH_S = 0.001
"""sys.setswitchinterval for the daemon. A thread that comes back from SQLite, a socket or a
device read waits for the GIL up to this long per Python thread that is busy (CPython's default
is 5 ms): the writer pays it for every statement while it holds SQLite's write lock. With six
busy threads (scripts/write_lock_drill.py) 1 ms cut the 95th percentile of the write-lock hold
from 0.31 s to 0.10 s and the longest health write from 0.86 s to 0.28 s."""


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

    def timing(self) -> PositionTiming:
        return PositionTiming(
            self.silence_end_s, self.managed_silence_end_s, self.preroll_s, self.retry_s
        )

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
        self.router = CommandRouter({})
        self.health: HealthMonitor | None = None
        self.metrics_server = None
        self.panel: PanelCommandReader | None = None
        self.db_path = cfg.resolve(cfg.paths.db)
        self._switch_interval: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """The boot order: models, store, publisher, pipeline, health, commands, capture."""
        # an admin's [retention]/[mqtt] overrides from the panel apply from this start on
        self.cfg = effective_config(self.cfg, self.db_path)
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_S)
        self.notifier.status("loading models")
        if self.engines is None:
            from appliance.ops.engines import load_engines

            self.engines = load_engines(self.cfg)
        self.notifier.status("opening the database")
        self.store = Store.for_config(self.db_path, self.cfg)
        if self.cfg.mqtt.url:
            from appliance.publish.mqtt import Publisher

            # connected only once the positions take commands (below): a broker holding a
            # backlog for this box delivers it at once, and none of it may find no position
            self.publisher = Publisher(
                self.db_path,
                self.cfg.mqtt_resolved(),
                box_id=self.cfg.box.id,
                on_command=lambda c: self.router.submit(c, "mqtt", checked=True),
            )
        self.pipeline = Pipeline(
            self.cfg,
            self.store,
            self.engines.emotion,
            self.engines.transcriber,
            on_stored=self.publisher.wake if self.publisher else None,
            block_when_full=False,  # live capture must never stall
        )
        self.health = HealthMonitor(self, self.store)
        if self.opts.metrics and self.opts.metrics != "off":
            try:
                token = self._metrics_token()
                self.metrics_server = start_metrics_server(self.opts.metrics, self.health, token)
            except OSError as exc:  # a busy port must not keep the calls from being analysed
                log.error("metrics endpoint %s not started: %s", self.opts.metrics, exc)
        timing = self.opts.timing()
        for pos in self.cfg.positions:
            factory = mono_factory(self.source_factory, self.cfg) if pos.mono else None
            self.workers[pos.id] = PositionWorker(
                pos,
                self.cfg,
                self.pipeline,
                factory or self.source_factory,
                timing,
                self.stop_event,
            )
        self.router.deliver = {pid: w.submit for pid, w in self.workers.items()}
        if self.publisher is not None:
            self.publisher.start()
        self.panel = PanelCommandReader(self.db_path, self.router)
        for w in self.workers.values():
            w.thread.start()
        log.info(
            "appliance running: %d position(s), db %s, mqtt %s",
            len(self.workers),
            self.db_path,
            self.cfg.mqtt.url or "off",
        )
        self.notifier.ready(f"capturing {len(self.workers)} position(s)")

    def _metrics_token(self) -> str | None:
        """The metrics bearer token ([daemon] metrics_token_file); an unreadable or empty file
        raises OSError (the endpoint then stays off rather than open)."""
        name = self.cfg.daemon.metrics_token_file
        if not name:
            return None
        path = self.cfg.resolve(name)
        token = path.read_text().strip()
        if not token:
            raise OSError(f"{path} is empty")
        return token

    def dispatch(self, cmd: dict, via: str = "mqtt") -> None:
        """Apply a call command as if it came from `via` (raises CommandRejected)."""
        self.router.submit(cmd, via)

    def healthy(self) -> bool:
        """What the watchdog vouches for: writer alive, every capture thread alive and moving."""
        if self.pipeline is None or not self.pipeline.writer_alive:
            return False
        now = time.monotonic()
        for w in self.workers.values():
            if not w.thread.is_alive() or now - w.stats.last_progress > STALL_S:
                return False
        return True

    # -- what health reads -------------------------------------------------------------------

    def engines_info(self) -> dict:
        return engines_info(self.engines)

    def runtime_snapshot(self) -> RuntimeSnapshot:
        pipe, pub, store = self.pipeline, self.publisher, self.store
        st = pipe.stats if pipe is not None else None
        return RuntimeSnapshot(
            streams=[w.snapshot() for w in self.workers.values()],
            utterances=st.utterances if st else 0,
            pipeline_overruns=st.overruns if st else 0,
            processing_s=(st.emotion_s + st.stt_s) if st else 0.0,
            latencies=list(st.latencies)[-200:] if st else [],
            queue_depth=pipe.queue_depth if pipe is not None else 0,
            transcripts_suspended=bool(store is not None and store.transcripts_suspended),
            broker_connected=bool(pub is not None and pub.connected.is_set()),
            commands_applied=self.router.applied,
            commands_rejected=self.router.rejected
            + (pub.commands_rejected if pub is not None else 0),
            write_failures=st.write_failures if st else 0,
        )

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
                    self.panel.poll()
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
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
        log.info("appliance stopped")


def mono_factory(factory: SourceFactory, cfg: AppConfig) -> SourceFactory:
    """A mono position's source, diarized into agent and customer before the pipeline."""
    from appliance.diarize.split import DiarizedSource

    def make(pos):
        enrol = str(cfg.resolve(pos.agent_enrolment)) if pos.agent_enrolment else None
        return DiarizedSource(factory(pos), cfg.vad, cfg.diarize, enrol, cfg.daemon.silence_end_s)

    return make


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
        return settings.get_json(db, settings.HEALTH)
    finally:
        db.conn.close()
