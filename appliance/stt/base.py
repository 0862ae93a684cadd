"""What every STT engine shares: the engine protocols, input checks, and the one place where
recognised text and words are finalised, which is where they are redacted.

Every text leaving an engine is redacted (`appliance.stt.redact`): transcripts, word lists and
partials.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from appliance.stt.redact import redact, redact_words
from appliance.stt.redact_numbers import tidy_digits
from appliance.types import Transcript, Word


class SttError(RuntimeError):
    """A model is missing, invalid or fails its hash check; the message says which and why."""


_TAG = re.compile(r"\[[A-Z]+\]")


@dataclass(frozen=True)
class DecodeHints:
    """What the pipeline knows about an utterance before it is decoded. Engines that read it
    say so with `accepts_hints = True`; others are called without it."""

    language: str = ""
    """ISO 639-1 code of the position's language; empty = the engine's default."""
    context: str = ""
    """The previous utterance of the same speaker in this call (already redacted): Whisper's
    prompt, so names and terms carry over an utterance boundary."""

    def context_text(self) -> str:
        """The context without redaction tags (a tag is nothing the speaker said)."""
        return " ".join(_TAG.sub(" ", self.context).split())


@runtime_checkable
class TranscriberStream(Protocol):
    """Incremental recognition of one utterance (or one channel) at a fixed sample rate."""

    def accept(self, chunk: np.ndarray) -> str | None:
        """Feed float32 samples; returns redacted partial text when it changed, else None."""

    def finish(self) -> Transcript:
        """End of input: the final, redacted transcript of everything accepted."""


@runtime_checkable
class Transcriber(Protocol):
    """One STT engine. Implementations are thread-safe; streams are not shared across threads."""

    name: str

    def transcribe(self, audio: np.ndarray, sr: int) -> Transcript:
        """Recognise one utterance; word timings are relative to its first sample. Engines with
        `accepts_hints = True` also take `hints: DecodeHints` (language, context)."""

    def stream(self, sr: int) -> TranscriberStream:
        """Start a stream for one utterance/channel (with `hints` where accepted)."""


def _check_audio(audio: np.ndarray, sr: int) -> np.ndarray:
    x = np.asarray(audio)
    if x.ndim != 1:
        raise ValueError(f"audio must be 1-D, got shape {x.shape}")
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sample rate must be a positive int, got {sr!r}")
    x = x.astype(np.float32, copy=False)
    if x.size and not np.all(np.isfinite(x)):
        raise ValueError("audio contains NaN or inf")
    return x


def _finalise(
    raw_text: str, raw_words: Sequence[Word], engine: str, duration: float, language: str = "en"
) -> Transcript:
    """Clamp timings into the utterance, make them monotonic, and redact text and words (with
    the number words and cues of `language`)."""
    words: list[Word] = []
    prev = 0.0
    for w in raw_words:
        text = w.text.strip()
        if not text:
            continue
        start = min(max(float(w.start), prev), duration)
        end = min(max(float(w.end), start), duration)
        words.append(Word(text=text, start=start, end=end, confidence=float(w.confidence)))
        prev = start
    return Transcript(
        text=redact(tidy_digits(" ".join(raw_text.split())), language=language).text,
        words=redact_words(words, language=language),
        engine=engine,
        final=True,
    )


# --- none ----------------------------------------------------------------------------------


class _NullStream:
    def accept(self, chunk: np.ndarray) -> str | None:
        return None

    def finish(self) -> Transcript:
        return Transcript(text="", words=(), engine="none", final=True)


class NullTranscriber:
    """Engine "none": STT disabled; every utterance gets an empty transcript."""

    name = "none"

    def transcribe(self, audio: np.ndarray, sr: int) -> Transcript:
        _check_audio(audio, sr)
        return Transcript(text="", words=(), engine=self.name, final=True)

    def stream(self, sr: int) -> TranscriberStream:
        return _NullStream()
