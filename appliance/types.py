"""Values that travel between pipeline stages.

Every stage takes and returns these frozen dataclasses, so a stage can be
replaced (tests, other engines) without touching its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Speaker = Literal["agent", "customer"]

EMOTION_LABELS: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)


@dataclass(frozen=True)
class EmotionResult:
    """What the emotion model says about one customer utterance."""

    label: str
    """One of EMOTION_LABELS."""
    confidence: float
    """Calibrated probability of `label`, 0..1."""
    intensity: float
    """How strongly the emotion is expressed, 0..1."""
    arousal: float
    """-1 (calm, low energy) .. 1 (excited, high energy)."""
    valence: float
    """-1 (negative) .. 1 (positive)."""
    uncertain: bool
    """True when `confidence` is below the model's calibrated threshold."""
    probabilities: tuple[float, ...] = ()
    """Calibrated probability per EMOTION_LABELS entry (same order)."""

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "confidence": round(float(self.confidence), 4),
            "intensity": round(float(self.intensity), 4),
            "arousal": round(float(self.arousal), 4),
            "valence": round(float(self.valence), 4),
            "uncertain": bool(self.uncertain),
        }


@dataclass(frozen=True)
class Word:
    """One recognised word with its timing relative to the utterance start."""

    text: str
    start: float
    end: float
    confidence: float = 1.0


@dataclass(frozen=True)
class Transcript:
    """Recognised text of one utterance. Always redacted before it leaves the STT stage."""

    text: str
    words: tuple[Word, ...] = ()
    engine: str = ""
    final: bool = True


@dataclass(frozen=True)
class Utterance:
    """A stretch of speech of one speaker, cut by the VAD."""

    call_id: str
    speaker: Speaker
    start: float
    """Seconds since the call started."""
    end: float
    audio: np.ndarray = field(repr=False, compare=False)
    """Mono float32 samples in [-1, 1] at `sample_rate`. Never written to disk."""
    sample_rate: int
    index: int = 0
    """Running number of this utterance in its call (both speakers)."""
    ended_at_monotonic: float = 0.0
    """time.monotonic() when the VAD closed the utterance (latency accounting)."""
    speech_prob: float | None = None
    """Mean speech probability the VAD's speech check gave the segment (None: energy VAD only);
    `appliance.vad.clean_transcript` uses it to drop text recognisers invent over non-speech."""

    @property
    def duration(self) -> float:
        return self.end - self.start
