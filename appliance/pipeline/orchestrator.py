"""The analysis pipeline: capture chunks in, scores in SQLite and the outbox out.

Stages and their queues:
  feed() [capture thread]    VAD per channel -> Utterance
  emotion executor (1 thread) features + ONNX, customer channel only, in order per call
                              (the running normalisation is causal, so order matters)
  stt executor (N threads)    transcription + redaction, both channels
  jobs queue (bounded)        one writer thread: fusion, call metrics, rules, relationship,
                              one SQLite transaction per utterance with its outbox rows
The writer takes jobs in the order utterances closed, so per-call state stays deterministic.
A full jobs queue either blocks the producer (replay) or drops the utterance and counts an
overrun (live capture must never stall PortAudio).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from appliance.config import AppConfig
from appliance.publish import contract
from appliance.scoring import relationship, sentiment
from appliance.scoring.call import CallScorer, ScoredUtterance, fuse
from appliance.scoring.rules import RuleEngine
from appliance.segment.vad import Segmenter
from appliance.store.db import Store
from appliance.stt.engines import default_stt_workers
from appliance.types import EmotionResult, Speaker, Transcript, Utterance

log = logging.getLogger(__name__)

WRITER_POLL_S = 0.01
"""How often the writer looks for finished stages while utterances are in flight."""


@dataclass(frozen=True)
class CallMeta:
    """Call metadata from CTI/CRM commands, the panel or the position's config."""

    position: str = "pos-1"
    customer_ref: str = ""
    """Customer reference as the CRM knows it; published only pseudonymised by default."""
    call_type: str = "support"
    segment: str = ""


@dataclass
class CallSession:
    id: str
    meta: CallMeta
    source: str
    sample_rate: int
    started_at: float
    segmenters: dict[str, Segmenter]
    emotion_states: dict[str, Any]
    scorer: CallScorer
    rules: RuleEngine
    next_index: int = 0
    results: list[dict] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    summary: dict = field(default_factory=dict)


#: Latency samples kept by `PipelineStats` (the newest; a daemon runs for months).
STATS_WINDOW = 20000


@dataclass
class PipelineStats:
    utterances: int = 0
    overruns: int = 0
    """Utterances dropped because the writer queue was full (live capture only)."""
    stt_skipped: int = 0
    """Utterances scored without text because the queue was backing up."""
    emotion_s: float = 0.0
    """CPU seconds of features + emotion (numba and onnxruntime run on the calling thread)."""
    stt_s: float = 0.0
    """Seconds spent decoding speech (wall time of each decode)."""
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=STATS_WINDOW))
    """Seconds from the VAD closing an utterance to its scores being committed."""
    latencies_ex_stt: deque[float] = field(default_factory=lambda: deque(maxlen=STATS_WINDOW))
    """The same less the time the recogniser spent decoding that utterance."""
    customer_latencies: deque[float] = field(default_factory=lambda: deque(maxlen=STATS_WINDOW))
    """`latencies` of customer utterances (the ones carrying emotion and sentiment)."""
    customer_latencies_ex_stt: deque[float] = field(
        default_factory=lambda: deque(maxlen=STATS_WINDOW)
    )
    utterance_ends: dict[tuple[str, int], tuple[str, float, float]] = field(default_factory=dict)
    """(call id, utterance index) -> (speaker, monotonic time the utterance ended, STT seconds):
    lets a subscriber measure utterance end -> score received (`appliance bench capacity`)."""
    first_score_at: float | None = None


class Pipeline:
    """Owns the stages; `open_call`/`feed`/`close_call` drive it."""

    def __init__(
        self,
        cfg: AppConfig,
        store: Store,
        emotion_model: Any,
        transcriber: Any | None,
        on_stored: Callable[[], None] | None = None,
        block_when_full: bool = True,
        stt_workers: int | None = None,
        queue_size: int = 64,
    ):
        self.cfg = cfg
        self.store = store
        self.emotion_model = emotion_model
        self.transcriber = transcriber
        self.on_stored = on_stored or (lambda: None)
        self.block_when_full = block_when_full
        self.stats = PipelineStats()
        self.key_phrases = sentiment.DEFAULT_KEY_PHRASES
        self._emotion_exec = ThreadPoolExecutor(1, thread_name_prefix="emotion")
        workers = stt_workers or cfg.stt.workers or default_stt_workers()
        self._stt_exec = ThreadPoolExecutor(workers, thread_name_prefix="stt")
        self.jobs: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stt_wall: dict[tuple[str, int], float] = {}
        self._pending_n = 0  # utterances taken off `jobs` by the writer, not yet written
        self.calls: dict[str, CallSession] = {}
        self._pseudonym_key = self._load_pseudonym_key()
        self._writer = threading.Thread(target=self._write_loop, name="writer", daemon=True)
        self._writer.start()

    # -- public driving API -----------------------------------------------------------

    def open_call(self, meta: CallMeta, sample_rate: int, source: str = "live") -> CallSession:
        call = CallSession(
            id=str(uuid.uuid4()),
            meta=meta,
            source=source,
            sample_rate=sample_rate,
            started_at=time.time(),
            segmenters={sp: Segmenter(sample_rate, self.cfg.vad) for sp in ("agent", "customer")},
            emotion_states={sp: self.emotion_model.new_state() for sp in self._emotion_speakers()},
            scorer=CallScorer(call_type=meta.call_type),
            rules=RuleEngine(
                self.cfg.rules or None, meta.call_type, self.cfg.alerts.budget_per_call
            ),
        )
        self.calls[call.id] = call
        self._put(("open", call))
        return call

    def feed(self, call: CallSession, chunks: dict[Speaker, np.ndarray]) -> None:
        """Push one time-aligned chunk per speaker (from the capture thread)."""
        for speaker, chunk in chunks.items():
            for seg in call.segmenters[speaker].push(chunk):
                self._submit(call, speaker, seg.start, seg.end, seg.audio)

    def close_call(self, call: CallSession) -> None:
        """End of call: flush the segmenters and queue the summary after the last utterance."""
        for speaker, segm in call.segmenters.items():
            for seg in segm.flush():
                self._submit(call, speaker, seg.start, seg.end, seg.audio)  # type: ignore[arg-type]
        self._put(("end", call), force=True)

    def update_meta(self, call: CallSession, meta: CallMeta) -> None:
        """CTI metadata arriving after the call started (customer reference, type, segment)."""
        self._put(("meta", call, meta), force=True)

    def wait(self, call: CallSession, timeout: float | None = None) -> bool:
        return call.done.wait(timeout)

    def stop(self) -> None:
        self._put(None, force=True)
        self._writer.join(30)
        self._emotion_exec.shutdown(wait=True)
        self._stt_exec.shutdown(wait=True)

    @property
    def queue_depth(self) -> int:
        return self.jobs.qsize() + self._pending_n

    # -- stages ------------------------------------------------------------------------

    def _emotion_speakers(self) -> tuple[str, ...]:
        # EU AI Act art. 5(1)(f): no emotion inference on workers unless explicitly allowed.
        return ("customer", "agent") if self.cfg.policy.agent_emotion else ("customer",)

    def _submit(
        self, call: CallSession, speaker: Speaker, start: float, end: float, audio: np.ndarray
    ) -> None:
        utt = Utterance(
            call_id=call.id,
            speaker=speaker,
            start=round(start, 3),
            end=round(end, 3),
            audio=audio,
            sample_rate=call.sample_rate,
            index=call.next_index,
            ended_at_monotonic=time.monotonic(),
        )
        call.next_index += 1
        emo: Future | None = None
        if speaker in self._emotion_speakers() and utt.duration >= self.cfg.emotion.min_duration:
            emo = self._emotion_exec.submit(self._infer, utt, call.emotion_states[speaker])
        stt = None
        if self.transcriber is not None:
            if self._shed_stt(speaker):
                self.stats.stt_skipped += 1
            else:
                stt = self._stt_exec.submit(self._transcribe, utt)
        if not self._put(("utt", call, utt, emo, stt)):
            self.stats.overruns += 1
            log.warning("pipeline overrun: utterance %s of call %s dropped", utt.index, call.id)

    def _shed_stt(self, speaker: str) -> bool:
        """Back-pressure: under load text goes before scores - agent text first, then customer text.
        Only live capture sheds; a replay (analyze, demo) blocks the reader instead and keeps all text."""
        if self.block_when_full:
            return False
        depth, size = self.queue_depth, self.jobs.maxsize
        return depth >= size // 4 if speaker == "agent" else depth >= size // 2

    def _put(self, job, force: bool = False) -> bool:
        if self.block_when_full or force:
            self.jobs.put(job)
            return True
        try:
            self.jobs.put_nowait(job)
            return True
        except queue.Full:
            return False

    def _infer(self, utt: Utterance, state: Any) -> EmotionResult:
        t = time.thread_time()
        try:
            return self.emotion_model.infer(utt.audio, utt.sample_rate, state)
        finally:
            self.stats.emotion_s += time.thread_time() - t

    def _transcribe(self, utt: Utterance) -> Transcript:
        # wall time, not this thread's CPU clock: CTranslate2 and Vosk decode in threads of their own
        w = time.monotonic()
        try:
            return self.transcriber.transcribe(utt.audio, utt.sample_rate)
        finally:
            took = time.monotonic() - w
            self.stats.stt_s += took
            self._stt_wall[(utt.call_id, utt.index)] = took

    # -- writer ------------------------------------------------------------------------

    def _write_loop(self) -> None:
        """Commit utterances as their stages finish, in order per call and speaker.

        One slow decode must not hold back the scores of other calls (or of the other speaker of
        the same call): jobs wait in a FIFO per (call, speaker) and whichever head is ready is
        written. A call's summary is written once all its utterances are."""
        pending: dict[tuple[str, str], deque] = {}
        ends: dict[str, tuple] = {}
        stopping = False
        while True:
            if not stopping and self._pending_n < self.jobs.maxsize:
                try:
                    job = self.jobs.get(timeout=WRITER_POLL_S if (pending or ends) else None)
                except queue.Empty:
                    job = ()
                if job is None:
                    stopping = True
                elif job:
                    self._route(job, pending, ends)
            elif pending:
                time.sleep(WRITER_POLL_S)
            self._drain_ready(pending, ends)
            if stopping and not pending and not ends:
                return

    def _route(self, job: tuple, pending: dict, ends: dict) -> None:
        kind = job[0]
        if kind == "utt":
            pending.setdefault((job[1].id, job[2].speaker), deque()).append(job)
            self._pending_n += 1
        elif kind == "end":
            ends[job[1].id] = job
        else:
            self._run_job(job)

    def _drain_ready(self, pending: dict, ends: dict) -> None:
        progress = True
        while progress:
            progress = False
            for key in list(pending):
                dq = pending[key]
                _, _, _, emo, stt = dq[0]
                if (emo is None or emo.done()) and (stt is None or stt.done()):
                    self._run_job(dq.popleft())
                    self._pending_n -= 1
                    progress = True
                    if not dq:
                        del pending[key]
        for call_id in list(ends):
            if not any(k[0] == call_id for k in pending):
                self._run_job(ends.pop(call_id))

    def _run_job(self, job: tuple) -> None:
        try:
            kind = job[0]
            if kind == "utt":
                self._write_utterance(*job[1:])
            elif kind == "open":
                self._write_call(job[1], "live")
            elif kind == "meta":
                job[1].meta = job[2]
                self._write_call(job[1], "live")
            elif kind == "end":
                self._end_call(job[1])
        except Exception:
            # a failing utterance must not stop the call; the row is lost, the error is loud
            log.exception("writer failed on %s job", job[0])
            if job[0] == "end":
                job[1].done.set()
        finally:
            self.on_stored()

    def _result(self, fut: Future | None, what: str):
        if fut is None:
            return None
        try:
            return fut.result()
        except Exception:
            log.exception("%s stage failed", what)
            return None

    def _write_utterance(
        self, call: CallSession, utt: Utterance, emo: Future | None, stt: Future | None
    ) -> None:
        emotion: EmotionResult | None = self._result(emo, "emotion")
        transcript: Transcript | None = self._result(stt, "stt")
        text = transcript.text if transcript else None
        n_words = len(text.split()) if text else 0
        is_customer = utt.speaker == "customer"
        text_sent = sentiment.text_sentiment(text) if (text and is_customer) else None
        phrases = sentiment.key_phrases(text, self.key_phrases) if (text and is_customer) else []
        fused = fuse(emotion, text_sent, n_words) if is_customer else None
        wpm = round(60.0 * n_words / utt.duration, 1) if n_words and utt.duration > 0 else None
        scored = ScoredUtterance(
            index=utt.index,
            speaker=utt.speaker,
            start=utt.start,
            end=utt.end,
            emotion=emotion,
            sentiment=fused.value if fused else None,
            sentiment_confidence=fused.confidence if fused else 0.0,
            n_words=n_words,
            key_phrases=phrases,
        )
        call.scorer.add(scored)
        alerts = []
        if is_customer:
            signals = call.scorer.signals()
            evidence = {
                "utterances": [u.index for u in call.scorer.customer()[-6:]],
                "trajectory": call.scorer.trajectory()[-6:],
            }
            alerts = call.rules.evaluate(signals, at=utt.end, evidence=evidence)
        now = time.time()
        row = {
            "call_id": call.id,
            "idx": utt.index,
            "speaker": utt.speaker,
            "start": utt.start,
            "end": utt.end,
            "emotion_label": emotion.label if emotion else None,
            "confidence": emotion.confidence if emotion else None,
            "intensity": emotion.intensity if emotion else None,
            "arousal": emotion.arousal if emotion else None,
            "valence": emotion.valence if emotion else None,
            "uncertain": int(emotion.uncertain) if emotion else None,
            "text_sentiment": text_sent,
            "sentiment": scored.sentiment,
            "sentiment_confidence": scored.sentiment_confidence,
            "wpm": wpm,
            "key_phrases": json.dumps(phrases) if phrases else None,
            "created_at": now,
        }
        trow = None
        if transcript is not None and self.cfg.policy.store_transcripts:
            words = [
                {"w": w.text, "s": round(w.start, 2), "e": round(w.end, 2)}
                for w in transcript.words
            ]
            trow = {
                "call_id": call.id,
                "text": transcript.text,
                "words": json.dumps(words),
                "engine": transcript.engine,
                "created_at": now,
            }
        body = {
            "call_id": call.id,
            "position": call.meta.position,
            "speaker": utt.speaker,
            "index": utt.index,
            "start": utt.start,
            "end": utt.end,
            "emotion": emotion.as_dict() if emotion else None,
            "sentiment": _r(scored.sentiment),
            "sentiment_confidence": _r(scored.sentiment_confidence),
            "text_sentiment": _r(text_sent),
            "words_per_minute": wpm,
            "key_phrase_count": len(phrases),
        }
        messages = [("utterance", contract.new_message("utterance", self.cfg.box.id, body, now))]
        alert_rows = []
        for a in alerts:
            arow, msg = self._alert(call, a, at=a.at, threshold=a.threshold)
            alert_rows.append(arow)
            messages.append(msg)
        call_row, call_msg = self._call_row(call, "live")
        messages.append(call_msg)
        self.store.write_utterance(
            row, trow, messages, upserts={"calls": [call_row], "alerts": alert_rows}
        )
        self.stats.utterances += 1
        latency = time.monotonic() - utt.ended_at_monotonic
        self.stats.latencies.append(latency)
        stt_wall = self._stt_wall.pop((call.id, utt.index), 0.0)
        ex_stt = latency - stt_wall
        self.stats.latencies_ex_stt.append(ex_stt)
        ends = self.stats.utterance_ends
        ends[(call.id, utt.index)] = (utt.speaker, utt.ended_at_monotonic, stt_wall)
        if len(ends) > STATS_WINDOW:  # the daemon runs for months: keep the newest only
            del ends[next(iter(ends))]
        if utt.speaker == "customer":
            self.stats.customer_latencies.append(latency)
            self.stats.customer_latencies_ex_stt.append(ex_stt)
        if self.stats.first_score_at is None:
            self.stats.first_score_at = time.monotonic()
        call.results.append(
            {
                "speaker": utt.speaker,
                "start": utt.start,
                "end": utt.end,
                "text": text,
                "emotion": emotion.as_dict() if emotion else None,
                "sentiment": _r(scored.sentiment),
            }
        )

    def _alert(self, call: CallSession, finding: Any, at: float, threshold: float | None = None):
        """Row, outbox message and analyze-output entry of a rule alert or a cross-call signal
        (both carry rule, severity, action, signal, value, reason, evidence)."""
        f = finding
        rule, severity, action, signal, value = f.rule, f.severity, f.action, f.signal, f.value
        reason, evidence = f.reason, f.evidence
        aid = str(uuid.uuid4())
        row = {
            "id": aid,
            "call_id": call.id,
            "customer_ref": call.meta.customer_ref or None,
            "position": call.meta.position,
            "rule": rule,
            "severity": severity,
            "action": action,
            "signal": signal,
            "value": value,
            "threshold": threshold,
            "at": at,
            "reason": reason,
            "evidence": json.dumps(evidence),
            "created_at": time.time(),
            "acknowledged_at": None,
            "acknowledged_by": None,
        }
        body = {
            "alert_id": aid,
            "call_id": call.id,
            "position": call.meta.position,
            "rule": rule,
            "severity": severity,
            "action": action,
            "signal": signal,
            "value": _r(value),
            "threshold": _r(threshold),
            "at": round(at, 2),
        }
        if call.meta.customer_ref:
            body["customer"] = self.customer_id(call.meta.customer_ref)
        call.alerts.append(
            {
                "rule": rule,
                "severity": severity,
                "action": action,
                "signal": signal,
                "value": _r(value),
                "at": round(at, 2),
                "reason": reason,
            }
        )
        return row, ("alert", contract.new_message("alert", self.cfg.box.id, body))

    def _call_row(self, call: CallSession, state: str) -> tuple[dict, tuple[str, dict]]:
        summary = call.scorer.summary()
        summary["alerts"] = len(call.alerts)
        ended = state == "ended"
        row = {
            "id": call.id,
            "position": call.meta.position,
            "customer_ref": call.meta.customer_ref or None,
            "call_type": call.meta.call_type,
            "segment": call.meta.segment or None,
            "source": call.source,
            "state": state,
            "started_at": call.started_at,
            "ended_at": time.time() if ended else None,
            "duration": summary["duration"],
            "metrics": json.dumps({**summary, "trajectory": call.scorer.trajectory()}),
            "alerts": len(call.alerts),
        }
        body = {
            "call_id": call.id,
            "position": call.meta.position,
            "state": state,
            "call_type": call.meta.call_type,
            "started_at": round(call.started_at, 3),
            "ended_at": round(row["ended_at"], 3) if ended else None,
            **summary,
        }
        if call.meta.customer_ref:
            body["customer"] = self.customer_id(call.meta.customer_ref)
        if call.meta.segment:
            body["segment"] = call.meta.segment
        return row, ("call", contract.new_message("call", self.cfg.box.id, body))

    def _write_call(self, call: CallSession, state: str) -> None:
        row, msg = self._call_row(call, state)
        self.store.write(upserts={"calls": [row]}, messages=[msg])

    def _end_call(self, call: CallSession) -> None:
        row, msg = self._call_row(call, "ended")
        messages = [msg]
        upserts: dict[str, list[dict]] = {
            "calls": [row],
            "alerts": [],
            "relationships": [],
            "settings": [],
        }
        summary = call.scorer.summary()
        call.summary = {**summary, "alerts": len(call.alerts)}
        ref = call.meta.customer_ref
        if ref:
            prev = self.store.db["relationships"].get(ref)["detail"] if self._has_rel(ref) else None
            state, signals = relationship.update_customer(
                json.loads(prev) if prev else None, call.id, summary, time.time()
            )
            upserts["relationships"].append(
                {
                    "customer_ref": ref,
                    "segment": call.meta.segment or None,
                    "calls": state["calls"],
                    "health": state["health"],
                    "trend": state["trend"],
                    "risk": state["risk"],
                    "advocacy": state["advocacy"],
                    "state": state["state"],
                    "detail": json.dumps(state),
                    "last_call_id": call.id,
                    "updated_at": time.time(),
                }
            )
            body = {
                "customer": self.customer_id(ref),
                "calls": state["calls"],
                "last_call_id": call.id,
                "health": state["health"],
                "trend": state["trend"],
                "risk": state["risk"],
                "advocacy": state["advocacy"],
                "state": state["state"],
            }
            if call.meta.segment:
                body["segment"] = call.meta.segment
            messages.append(
                ("relationship", contract.new_message("relationship", self.cfg.box.id, body))
            )
            if call.meta.segment:
                key = f"segment:{call.meta.segment}"
                srow = self.store.db.execute(
                    "SELECT value FROM settings WHERE key = ?", [key]
                ).fetchone()
                seg_state, seg_signals = relationship.update_segment(
                    json.loads(srow[0]) if srow else None,
                    call.meta.segment,
                    call.id,
                    summary.get("sentiment_mean"),
                )
                upserts["settings"].append(
                    {"key": key, "value": json.dumps(seg_state), "updated_at": time.time()}
                )
                signals = [*signals, *seg_signals]
            for sig in signals:
                arow, amsg = self._alert(call, sig, at=summary["duration"])
                upserts["alerts"].append(arow)
                messages.append(amsg)
        self.store.write(upserts=upserts, messages=messages)
        call.done.set()
        self.calls.pop(call.id, None)

    def _has_rel(self, ref: str) -> bool:
        return (
            self.store.db.execute(
                "SELECT 1 FROM relationships WHERE customer_ref = ?", [ref]
            ).fetchone()
            is not None
        )

    # -- pseudonyms --------------------------------------------------------------------

    def _load_pseudonym_key(self) -> bytes:
        state = (
            self.cfg.resolve(self.cfg.paths.state_dir)
            if self.cfg.paths.state_dir
            else self.store.path.parent
        )
        path = Path(state) / "pseudonym.key"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            key = secrets.token_bytes(32)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
            return key

    def customer_id(self, ref: str) -> str:
        """How a customer reference leaves the box."""
        if self.cfg.mqtt.pseudonymise_customers:
            return contract.pseudonymise(ref, self._pseudonym_key)
        return ref[:64]


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(float(v), nd)
