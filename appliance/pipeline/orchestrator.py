"""The analysis pipeline: capture chunks in, scores in SQLite and the outbox out.

Stages and their queues:
  feed() [capture thread]    VAD per channel -> Utterance
  emotion executor (1 thread) features + ONNX, customer channel only, in order per call
                              (the running normalisation is causal, so order matters)
  stt executor (N threads)    transcription + redaction, both channels; each decode gets the
                              position's language and the speaker's previous utterance
  partials (1 thread)         the customer's open utterance streamed to the recogniser; key
                              phrases heard go to the writer before the utterance ends
  jobs queue (bounded)        one writer thread: fusion, call metrics, rules, relationship,
                              one SQLite transaction per utterance with its outbox rows
The writer takes jobs in the order utterances closed, so per-call state stays deterministic.
A full jobs queue either blocks the producer (replay) or drops the utterance and counts an
overrun (live capture must never stall PortAudio).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.config import AppConfig
from appliance.emotion.engine import EmotionEngine
from appliance.pipeline.call import CallMeta, CallSession
from appliance.pipeline.partials import Partials
from appliance.pipeline.writer import CallWriter
from appliance.publish.pseudonym import Pseudonymiser, customer_key
from appliance.scoring.call import CallScorer
from appliance.scoring.rules import RuleEngine
from appliance.segment.vad import Segment, Segmenter, clean_transcript
from appliance.store.connection import StorageError
from appliance.store.writer import Store
from appliance.stt.base import DecodeHints, Transcriber
from appliance.stt.call_redaction import CallRedaction, Released
from appliance.stt.engines import default_stt_workers
from appliance.types import EmotionResult, Speaker, Transcript, Utterance

__all__ = ["CallMeta", "CallSession", "Committed", "Pipeline", "PipelineStats"]

log = logging.getLogger(__name__)

WRITER_POLL_S = 0.01
"""How often the writer looks for finished stages while utterances are in flight."""


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
    first_score_at: float | None = None
    """time.monotonic() of the first committed score (cold start measurements)."""
    write_failures: int = 0
    """Writer jobs (utterances, call rows) the store refused (full disk, I/O error): lost."""
    last_write_error: str = ""


@dataclass(frozen=True)
class Committed:
    """An utterance whose scores were committed, for listeners (`appliance bench capacity`
    matches these to the messages a subscriber receives)."""

    call_id: str
    index: int
    speaker: str
    ended_at: float
    """time.monotonic() when the VAD closed the utterance."""
    stt_s: float
    """Seconds the recogniser spent on it."""


class Pipeline:
    """Owns the stages; `open_call`/`feed`/`close_call` drive it."""

    def __init__(
        self,
        cfg: AppConfig,
        store: Store,
        emotion_model: EmotionEngine,
        transcriber: Transcriber | None,
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
        self.listeners: list[Callable[[Committed], None]] = []
        """Called on the writer thread after each utterance is committed."""
        self._emotion_exec = ThreadPoolExecutor(1, thread_name_prefix="emotion")
        workers = stt_workers or cfg.stt.workers or default_stt_workers()
        self._stt_exec = ThreadPoolExecutor(workers, thread_name_prefix="stt")
        self._stt_waiting = 0
        """Final decodes submitted and not yet taken by an STT worker (partials yield to them)."""
        self._stt_lock = threading.Lock()
        self.jobs: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stt_wall: dict[tuple[str, int], float] = {}
        self._pending_n = 0  # utterances taken off `jobs` by the writer, not yet written
        self.calls: dict[str, CallSession] = {}
        state_dir = cfg.resolve(cfg.paths.state_dir) if cfg.paths.state_dir else store.path.parent
        key_file = cfg.resolve(cfg.mqtt.customer_key_file) if cfg.mqtt.customer_key_file else None
        self.customer_id = Pseudonymiser(
            customer_key(key_file, state_dir), cfg.mqtt.pseudonymise_customers
        )
        """How a customer reference leaves the box."""
        self.writer = CallWriter(cfg, store, self.customer_id)
        self.partials: Partials | None = None
        """Partial results of the customer's open utterance (stt.partials and a streaming engine)."""
        if cfg.stt.partials and getattr(transcriber, "streams_partials", False):
            self.partials = Partials(transcriber, self._put_partial, busy=self._stt_behind)
        orphans, store.orphans = store.orphans, []
        self.writer.close_orphans(orphans)
        self._writer = threading.Thread(target=self._write_loop, name="writer", daemon=True)
        self._writer.start()

    @property
    def writer_alive(self) -> bool:
        """False once the writer thread died (health and the watchdog check this)."""
        return self._writer.is_alive()

    # -- public driving API -----------------------------------------------------------

    def language_of(self, position: str) -> str:
        """The language of a position's calls: its own, else `stt.language`."""
        for p in self.cfg.positions:
            if p.id == position and p.language:
                return p.language
        return self.cfg.stt.language

    def open_call(self, meta: CallMeta, sample_rate: int, source: str = "live") -> CallSession:
        language = self.language_of(meta.position)
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
            redaction=CallRedaction(self.cfg.redaction, language=language),
            language=language,
        )
        self.calls[call.id] = call
        self._put(("open", call))
        return call

    def feed(self, call: CallSession, chunks: dict[Speaker, np.ndarray]) -> None:
        """Push one time-aligned chunk per speaker (from the capture thread)."""
        for speaker, chunk in chunks.items():
            for seg in call.segmenters[speaker].push(chunk):
                self._submit(call, speaker, seg)
        if self.partials is not None and "customer" in chunks:
            self.partials.feed(call, call.segmenters["customer"])
        segs = call.segmenters.values()
        opened = [s.open_since for s in segs if s.open_since is not None]
        call.watermark = min([max(s.position for s in segs), *opened])

    def close_call(self, call: CallSession) -> None:
        """End of call: flush the segmenters and queue the summary after the last utterance."""
        for speaker, segm in call.segmenters.items():
            for seg in segm.flush():
                self._submit(call, speaker, seg)  # type: ignore[arg-type]
        self._put(("end", call), force=True)

    def update_meta(self, call: CallSession, meta: CallMeta) -> None:
        """CTI metadata arriving after the call started (customer reference, type, segment)."""
        self._put(("meta", call, meta), force=True)

    def pause_transcription(self, call: CallSession, paused: bool) -> None:
        """Stop (or restart) storing the call's transcripts from its current audio position,
        both speakers (a `pause`/`resume` command, e.g. while the customer pays)."""
        at = max(s.position for s in call.segmenters.values())
        self._put(("pause", call, paused, at), force=True)

    def wait(self, call: CallSession, timeout: float | None = None) -> bool:
        return call.done.wait(timeout)

    def stop(self) -> None:
        self._put(None, force=True)
        self._writer.join(30)
        self._emotion_exec.shutdown(wait=True)
        self._stt_exec.shutdown(wait=True)
        if self.partials is not None:
            self.partials.stop()

    @property
    def queue_depth(self) -> int:
        return self.jobs.qsize() + self._pending_n

    # -- stages ------------------------------------------------------------------------

    def _emotion_speakers(self) -> tuple[str, ...]:
        # EU AI Act art. 5(1)(f): no emotion inference on workers unless explicitly allowed.
        return ("customer", "agent") if self.cfg.policy.agent_emotion else ("customer",)

    def _submit(self, call: CallSession, speaker: Speaker, seg: Segment) -> None:
        utt = Utterance(
            call_id=call.id,
            speaker=speaker,
            start=round(seg.start, 3),
            end=round(seg.end, 3),
            audio=seg.audio,
            sample_rate=call.sample_rate,
            index=call.next_index,
            ended_at_monotonic=time.monotonic(),
            speech_prob=seg.speech_prob,
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
                prev = call.stt_prev.get(speaker) if self.cfg.stt.context else None
                with self._stt_lock:
                    self._stt_waiting += 1
                stt = self._stt_exec.submit(self._transcribe, utt, call.language, prev)
                call.stt_prev[speaker] = stt
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

    def _put_partial(self, job: tuple) -> bool:
        """Partials never block or force their way in: under load they are dropped."""
        try:
            self.jobs.put_nowait(job)
            return True
        except queue.Full:
            return False

    def _hints(self, language: str, prev: Future | None) -> DecodeHints:
        """The decode's language and context: the speaker's previous utterance (redacted). Its
        decode was submitted before this one to the same FIFO pool, so waiting cannot deadlock;
        it usually finished long ago (the other speaker talked in between)."""
        context = ""
        if prev is not None:
            try:
                context = prev.result().text
            except Exception:
                context = ""  # that utterance's failure is logged where it is committed
        return DecodeHints(language=language, context=context)

    def _stt_behind(self) -> bool:
        """Final decodes are waiting for a worker: the box is behind on text that is stored."""
        return self._stt_waiting > 0

    def _transcribe(self, utt: Utterance, language: str = "en", prev: Future | None = None):
        with self._stt_lock:
            self._stt_waiting -= 1
        hints = (
            self._hints(language, prev)
            if getattr(self.transcriber, "accepts_hints", False)
            else None
        )
        # wall time, not this thread's CPU clock: CTranslate2 and Vosk decode in threads of their own
        w = time.monotonic()
        try:
            if hints is not None:
                return self.transcriber.transcribe(utt.audio, utt.sample_rate, hints)
            return self.transcriber.transcribe(utt.audio, utt.sample_rate)
        finally:
            took = time.monotonic() - w
            self.stats.stt_s += took
            self._stt_wall[(utt.call_id, utt.index)] = took

    # -- writer ------------------------------------------------------------------------

    def _write_loop(self) -> None:
        """Commit utterances as their stages finish, in order per call.

        One slow decode must not hold back the scores of other calls: jobs wait in a FIFO per
        call and whichever call's head is ready is written. Within a call, utterances reach the
        redaction context in the order the VAD closed them (both speakers: a prompt before its
        answer), which may hold some until a digit sequence closes. A call's summary is written
        once all its utterances are."""
        pending: dict[str, deque] = {}
        ends: dict[str, tuple] = {}
        stopping = False
        while True:
            if not stopping and self._pending_n < self.jobs.maxsize:
                busy = pending or ends or any(c.held for c in self.calls.values())
                try:
                    job = self.jobs.get(timeout=WRITER_POLL_S if busy else None)
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
            pending.setdefault(job[1].id, deque()).append(job)
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
        for call in list(self.calls.values()):
            if call.held:
                first = pending.get(call.id)
                watermark = min(call.watermark, first[0][2].start) if first else call.watermark
                self._run_job(("expire", call, watermark))
        for call_id in list(ends):
            if call_id not in pending:
                self._run_job(ends.pop(call_id))

    def _run_job(self, job: tuple) -> None:
        try:
            kind = job[0]
            if kind == "utt":
                self._commit_utterance(*job[1:])
            elif kind == "open":
                self.writer.write_call(job[1])
            elif kind == "meta":
                job[1].meta = job[2]
                self.writer.write_call(job[1])
            elif kind == "partial":
                _, call, phrases, at = job
                if call.id in self.calls:
                    self.writer.write_partial(call, phrases, at)
            elif kind == "expire":
                self._release(job[1], job[1].redaction.expire(job[2]))
            elif kind == "pause":
                _, call, paused, at = job
                (call.redaction.pause if paused else call.redaction.resume)(at)
                self.writer.write_call(call)
            elif kind == "end":
                self._release(job[1], job[1].redaction.close())
                self.writer.end_call(job[1])
                job[1].done.set()
                self.calls.pop(job[1].id, None)
        except Exception as exc:
            # a failing utterance must not stop the call; the row is lost, the error is loud and
            # counted, so nothing that analysed a call can report it stored
            if isinstance(exc, StorageError):  # full disk, I/O error: the message says it all
                log.error("writer failed on %s job: %s", job[0], exc)
            else:
                log.exception("writer failed on %s job", job[0])
            self.stats.write_failures += 1
            self.stats.last_write_error = f"{type(exc).__name__}: {exc}"[:200]
            job[1].write_failures += 1
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

    def _commit_utterance(
        self, call: CallSession, utt: Utterance, emo: Future | None, stt: Future | None
    ) -> None:
        emotion: EmotionResult | None = self._result(emo, "emotion")
        transcript: Transcript | None = self._result(stt, "stt")
        if transcript is not None:
            # what recognisers invent over music or noise ("Thank you.") is no customer's words
            text = clean_transcript(transcript.text, utt.speech_prob)
            if text != transcript.text:
                transcript = dataclasses.replace(transcript, text=text or "", words=())
        call.held[utt.index] = (utt, emotion)
        self._release(
            call, call.redaction.add(utt.index, utt.speaker, utt.start, utt.end, transcript)
        )

    def _release(self, call: CallSession, released: list[Released]) -> None:
        """Write what the redaction context lets go, in its order, with its final transcript."""
        for r in released:
            utt, emotion = call.held.pop(r.index)
            self.writer.write_utterance(call, utt, emotion, r.transcript, withheld=r.paused)
            self._count_commit(utt)

    def _count_commit(self, utt: Utterance) -> None:
        st = self.stats
        st.utterances += 1
        latency = time.monotonic() - utt.ended_at_monotonic
        stt_wall = self._stt_wall.pop((utt.call_id, utt.index), 0.0)
        st.latencies.append(latency)
        st.latencies_ex_stt.append(latency - stt_wall)
        if utt.speaker == "customer":
            st.customer_latencies.append(latency)
            st.customer_latencies_ex_stt.append(latency - stt_wall)
        if st.first_score_at is None:
            st.first_score_at = time.monotonic()
        done = Committed(utt.call_id, utt.index, utt.speaker, utt.ended_at_monotonic, stt_wall)
        for listener in self.listeners:
            listener(done)
