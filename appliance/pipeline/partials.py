"""Partial results while the customer speaks, so a keyword rule ("speak to a manager") fires
before the utterance ends.

The capture thread hands each new piece of the customer's open utterance (`Segmenter.open_audio`)
to one "partials" thread, which feeds the recogniser's stream for that utterance: Vosk streams
natively; Whisper decodes what was said so far every `stt.partial_interval_s` (a growing window,
`appliance.stt.whisper`). A partial is redacted by the stream (`redact(text, partial=True)`) and
never stored or published: only the key phrases found in it travel on, as a `partial` job in
the writer's queue, and the writer decides (`CallWriter.write_partial`) whether an alert fires,
through the same rules, store transaction and outbox as every other alert. The writer drops a
partial while the call's redaction context holds, expects an answer to a sensitive question, or
is paused: what the customer says then is for the context to judge on the final text.

Partials are the first thing shed under load: while final decodes wait for an STT worker
(`busy()`), or with more than `MAX_BACKLOG` pieces waiting, the rest of that utterance gets none
(its final transcript and scores are unaffected). A Whisper partial re-decodes the growing
utterance, so without the first rule 24 calls on 2 cores fell behind real time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from appliance.scoring.sentiment import key_phrases, phrases_for
from appliance.segment.vad import FRAME_S, Segmenter
from appliance.stt.base import DecodeHints

log = logging.getLogger(__name__)

#: Pieces (20 ms chunks) waiting for the partials thread before an utterance's partials stop.
MAX_BACKLOG = 100


@dataclass
class PartialState:
    """The customer's open utterance as the partials thread sees it."""

    start: float
    """Call time (s) the utterance opened at."""
    frames: int = 0
    """Segmenter frames already handed over."""
    stream: Any = None
    skipped: bool = False
    """Shed under load: no more partials for this utterance."""
    found: set[str] = field(default_factory=set)
    """Key phrases already reported for this utterance."""


class Partials:
    """Streams each call's open customer utterance to the recogniser (one thread)."""

    def __init__(
        self,
        transcriber: Any,
        put: Callable[[tuple], bool],
        phrases: Callable[[str], tuple[str, ...]] = phrases_for,
        busy: Callable[[], bool] = lambda: False,
    ):
        self.transcriber = transcriber
        self._busy = busy
        self._put = put
        self._phrases = phrases
        self._exec = ThreadPoolExecutor(1, thread_name_prefix="partials")
        self._backlog = 0
        self._lock = threading.Lock()
        self.skipped = 0
        """Utterances whose partials were shed under load."""
        self.decoded = 0
        """Pieces fed to a recogniser stream."""

    def feed(self, call: Any, segmenter: Segmenter) -> None:
        """After the capture thread pushed audio: hand over what the open utterance gained."""
        st: PartialState | None = call.partial
        start = segmenter.open_since
        if start is None:
            call.partial = None  # the utterance closed: its final decode takes over
            return
        if st is None or st.start != start:
            st = PartialState(start)
            call.partial = st
        audio, frames = segmenter.open_audio(st.frames)
        st.frames = frames
        if st.skipped or audio.size == 0:
            return
        with self._lock:
            if self._backlog >= MAX_BACKLOG or self._busy():
                st.skipped = True
                self.skipped += 1
                return
            self._backlog += 1
        at = start + frames * FRAME_S
        self._exec.submit(self._step, call, st, audio, at)

    def _step(self, call: Any, st: PartialState, audio: Any, at: float) -> None:
        try:
            if call.partial is not st:
                return  # the utterance closed while this piece waited
            if st.stream is None:
                if getattr(self.transcriber, "accepts_hints", False):
                    hints = DecodeHints(language=call.language)
                    st.stream = self.transcriber.stream(call.sample_rate, hints)
                else:
                    st.stream = self.transcriber.stream(call.sample_rate)
            text = st.stream.accept(audio)
            self.decoded += 1
            if not text:
                return
            new = [p for p in key_phrases(text, self._phrases(call.language)) if p not in st.found]
            if new:
                st.found.update(new)
                self._put(("partial", call, new, at))
        except Exception:
            log.exception("partial recognition failed; the final transcript is unaffected")
            st.skipped = True
        finally:
            with self._lock:
                self._backlog -= 1

    def stop(self) -> None:
        self._exec.shutdown(wait=True)
