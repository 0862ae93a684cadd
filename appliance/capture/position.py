"""A position: one agent's capture stream turned into calls.

`PositionWorker` reads its source in its own thread, detects calls and feeds the pipeline.
Calls open and end three ways:

* auto: a call opens when the customer channel starts speaking after idle; it ends after
  `silence_end_s` seconds of silence on both channels.
* a `start` command (CTI over MQTT or the panel: `appliance.publish.commands`) opens a call
  (or adopts the call that speech opened a moment before) and sets its metadata; such a call
  ends only on `end` (or after `managed_silence_end_s` of silence, a safety net for a lost
  `end`); `update` changes the metadata of the current call (or of the next one when idle).

All call state lives in this worker's thread; commands are queued and applied between chunks,
so no lock is needed around a call.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from appliance.config import AppConfig, PositionConfig
from appliance.pipeline.call import CallMeta
from appliance.pipeline.orchestrator import Pipeline
from appliance.segment.vad import Segmenter

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
COMMAND_QUEUE = 1024
"""Commands waiting for a position. A CTI burst fits; beyond it `submit` blocks its caller
(the MQTT reader: the broker holds the rest, QoS 1 flow control) instead of dropping any."""
SUBMIT_WAIT_S = 5.0
"""How long `submit` blocks on a full queue before it gives up (a position that stopped
taking commands), well inside the MQTT keep-alive."""
APPLY_PER_CHUNK = 32
"""Commands applied between two chunks: a burst is spread over a few chunks, so capture keeps
pace (1,600 commands a second)."""


@dataclass(frozen=True)
class PositionTiming:
    """When calls end and how a lost device is retried (the daemon's options)."""

    silence_end_s: float = SILENCE_END_S
    managed_silence_end_s: float = MANAGED_SILENCE_END_S
    preroll_s: float = PREROLL_S
    retry_s: float = RETRY_S


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


@dataclass(frozen=True)
class StreamSnapshot:
    """One position's counters, as health reads them."""

    position: str
    device: str
    connected: bool
    in_call: bool
    call_id: str | None
    calls: int
    audio_s: float
    """Seconds of audio captured since start."""
    feed_s: float
    """Capture-thread seconds spent on VAD and call detection since start."""
    overruns: int
    """Input overflows the source reported."""
    device_errors: int
    error: str


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
        opts: PositionTiming,
        stop: threading.Event,
    ):
        self.pos = pos
        self.cfg = cfg
        self.pipeline = pipeline
        self.factory = factory
        self.opts = opts
        self.stop_event = stop
        self.stats = StreamStats()
        self.commands: queue.Queue[dict] = queue.Queue(maxsize=COMMAND_QUEUE)
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
        """Queue a command for this position's thread; RuntimeError if it takes none for
        SUBMIT_WAIT_S (the caller rejects and counts it: never dropped silently)."""
        try:
            self.commands.put(cmd, timeout=SUBMIT_WAIT_S)
        except queue.Full:
            raise RuntimeError(
                f"position {self.pos.id} takes no commands ({self.commands.maxsize} waiting)"
            ) from None

    @property
    def in_call(self) -> bool:
        return self.call is not None

    def snapshot(self) -> StreamSnapshot:
        s, src, call = self.stats, self.source, self.call
        current = int(getattr(src, "overruns", 0) or 0) if src is not None else 0
        return StreamSnapshot(
            position=self.pos.id,
            device=self.pos.device,
            connected=bool(s.connected),
            in_call=call is not None,
            call_id=call.id if call is not None else None,
            calls=s.calls,
            audio_s=s.audio_s,
            feed_s=s.feed_s,
            overruns=s.source_overruns + current,
            device_errors=s.device_errors,
            error=s.error,
        )

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
        for _ in range(APPLY_PER_CHUNK):
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                return
            try:
                self._command(cmd)
            except Exception:
                log.exception("position %s: %s command failed", self.pos.id, cmd.get("action"))

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
        elif action in ("pause", "resume"):
            if self.call is None:
                log.warning("position %s: %s with no call in progress", self.pos.id, action)
            else:
                self.pipeline.pause_transcription(self.call, action == "pause")

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
