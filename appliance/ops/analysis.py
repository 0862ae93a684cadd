"""Offline analysis of a recording through exactly the live pipeline (`appliance analyze`)."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.capture.sources import WavReplaySource, WavStreamSource
from appliance.capture.wav import Recording, WavFile, open_wav
from appliance.config import AppConfig
from appliance.pipeline.call import CallMeta
from appliance.pipeline.orchestrator import Pipeline
from appliance.publish.mqtt import Publisher
from appliance.store.connection import StorageError
from appliance.store.writer import Store

log = logging.getLogger(__name__)

CHANNEL_CHOICES = ("agent,customer", "customer,agent", "customer", "agent", "mixed")


def speakers_for(recording: Recording | WavFile, channels: str | None) -> list[str]:
    """Map file channels to speakers: mono = customer unless told agent; stereo in the order given."""
    n = recording.n_channels if isinstance(recording, WavFile) else len(recording.channels)
    if channels is None:
        return ["customer"] if n == 1 else ["agent", "customer"]
    names = [c.strip() for c in channels.split(",")]
    if names == ["mixed"] and n == 1:  # both parties on one channel: diarized
        return names
    if any(c not in ("agent", "customer") for c in names) or len(set(names)) != len(names):
        raise ValueError(
            f"--channels must be one of {', '.join(CHANNEL_CHOICES)}; got {channels!r}"
        )
    if len(names) != n:
        raise ValueError(f"--channels names {len(names)} channel(s) but the file has {n}")
    return names


def start_publisher(cfg: AppConfig, db_path: str | Path, url: str, on_command=None) -> Publisher:
    """A running publisher for `db_path` with the config's identity, prefix and TLS settings."""
    publisher = Publisher(db_path, cfg.mqtt_resolved(url), box_id=cfg.box.id, on_command=on_command)
    publisher.start()
    return publisher


@dataclass
class Session:
    """A store, a pipeline and (optionally) a publisher, started and stopped in order."""

    cfg: AppConfig
    db_path: Path
    engines: Any
    mqtt_url: str | None = None
    block_when_full: bool = True
    store: Store = field(init=False)
    pipeline: Pipeline = field(init=False)
    publisher: Publisher | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.store = Store.for_config(self.db_path, self.cfg)
        try:
            if self.mqtt_url:
                self.publisher = start_publisher(self.cfg, self.db_path, self.mqtt_url)
            self.pipeline = Pipeline(
                self.cfg,
                self.store,
                self.engines.emotion,
                self.engines.transcriber,
                on_stored=self.publisher.wake if self.publisher else None,
                block_when_full=self.block_when_full,
            )
        except BaseException:  # e.g. an unusable pseudonym key: leave nothing running
            if self.publisher is not None:
                self.publisher.stop()
            self.store.close()
            raise

    def replay(
        self,
        recording: Recording | WavFile,
        speakers: list[str],
        meta: CallMeta,
        speed: float = 0.0,
        source: str = "analyze",
        enrolment: str | None = None,
    ):
        """One call from a decoded recording, or from a WAV file decoded as it goes."""
        mixed = speakers == ["mixed"]
        names = ["customer"] if mixed else speakers
        src: WavReplaySource | WavStreamSource
        if isinstance(recording, WavFile):
            src = WavStreamSource(recording, names, speed=speed)  # type: ignore[arg-type]
        else:
            src = WavReplaySource(recording, names, speed=speed)  # type: ignore[arg-type]
        call = self.pipeline.open_call(meta, src.sample_rate, source=source)
        split = None
        if mixed:
            from appliance.diarize.split import MonoSplitter

            split = MonoSplitter(src.sample_rate, self.cfg.vad, self.cfg.diarize, enrolment)
        for chunk in src.chunks():
            for part in split.push(chunk["customer"]) if split else [chunk]:
                self.pipeline.feed(call, part)
        for part in split.flush() if split else []:
            self.pipeline.feed(call, part)
        self.pipeline.close_call(call)
        self.pipeline.wait(call)
        return call

    def close(self, flush_timeout: float = 5.0) -> None:
        """Stop order: pipeline (drain) -> publisher (flush what it can, offline status) -> store."""
        self.pipeline.stop()
        if self.publisher is not None:
            if self.publisher.connected.is_set():
                self.publisher.flush(flush_timeout)
            self.publisher.stop()
        self.store.close()


def analyze_file(
    path: str | Path,
    cfg: AppConfig,
    engines: Any,
    channels: str | None = None,
    db_path: str | Path | None = None,
    mqtt_url: str | None = None,
    meta: CallMeta | None = None,
    enrolment: str | None = None,
) -> dict:
    """Analyse one recording; returns the `analyze --json` document. AudioError before any write
    (also for a file longer than `analyze.max_duration_s`); StorageError when the database
    refused any of the call's writes (nothing silently lost). The file is decoded a block at a
    time: memory does not grow with its length."""
    recording = open_wav(path, cfg.analyze.max_duration_s)  # a bad file writes nothing
    speakers = speakers_for(recording, channels)
    tmp = None
    if db_path is None:
        tmp = tempfile.TemporaryDirectory(prefix="appliance-analyze-")
        db_path = Path(tmp.name) / "analyze.db"
    t0 = time.monotonic()
    try:
        session = Session(cfg, Path(db_path), engines, mqtt_url=mqtt_url)
        try:
            call = session.replay(
                recording,
                speakers,
                meta
                or CallMeta(position=cfg.positions[0].id, call_type=cfg.positions[0].call_type),
                enrolment=enrolment,
            )
        finally:
            session.close(flush_timeout=3.0)
        if call.write_failures:
            raise StorageError(
                f"{db_path}: {call.write_failures} write(s) of call {call.id} failed"
                f" ({session.pipeline.stats.last_write_error}); its scores are incomplete"
            )
    finally:
        if tmp is not None:
            tmp.cleanup()
    elapsed = time.monotonic() - t0
    rtf = elapsed / max(recording.duration, 1e-6)
    return call_document(call, rtf, str(db_path) if tmp is None else None)


def call_document(call: Any, rtf: float | None, db: str | None) -> dict:
    """What `analyze --json` prints for a call (and `tap`/`siprec --json` for each of theirs)."""
    return {
        "call": {
            "id": call.id,
            "call_type": call.meta.call_type,
            "position": call.meta.position,
            **call.summary,
            "rtf": None if rtf is None else round(rtf, 3),
        },
        "utterances": sorted(call.results, key=lambda u: (u["start"], u["speaker"])),
        "alerts": call.alerts,
        "db": db,
    }
