"""The one set of stand-in engines and sources for tests, sample data and drills.

A fake is a seam for a unit test of logic (the rules, the relationship, back-pressure, the
daemon's call detection); every capability also has a test through the real models.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from appliance.ops.engines import Engines
from appliance.types import EmotionResult, Transcript

Script = Callable[[np.ndarray, int, int], EmotionResult]
"""(audio, sample rate, number of this utterance on its call channel, from 1) -> result."""


def result(
    label: str = "neutral",
    confidence: float = 0.9,
    intensity: float = 0.5,
    arousal: float = 0.0,
    valence: float = 0.0,
    uncertain: bool = False,
) -> EmotionResult:
    return EmotionResult(label, confidence, intensity, arousal, valence, uncertain)


def constant(r: EmotionResult) -> Script:
    return lambda audio, sr, n: r


def alternating(*results: EmotionResult) -> Script:
    """The given results in turn, per call channel."""
    return lambda audio, sr, n: results[(n - 1) % len(results)]


def by_level(loud: EmotionResult, quiet: EmotionResult, rms: float = 0.1) -> Script:
    """`loud` for utterances whose RMS exceeds `rms`, else `quiet`."""

    def script(audio: np.ndarray, sr: int, n: int) -> EmotionResult:
        level = float(np.sqrt(np.mean(np.square(audio)))) if len(audio) else 0.0
        return loud if level > rms else quiet

    return script


class FakeEmotion:
    """An emotion engine that says what its script says, records what reached it, and can be
    slow (`delay_s`) like a loaded box."""

    info = {"name": "fake", "version": "0.0.1-test", "sha256": "0" * 64, "providers": ["CPU"]}

    def __init__(self, script: Script | None = None, delay_s: float = 0.0):
        self.script = script or constant(result())
        self.delay_s = delay_s
        self.seen: list[np.ndarray] = []
        self._lock = threading.Lock()

    def new_state(self) -> dict:
        return {"n": 0}

    def infer(self, audio: np.ndarray, sr: int, state: dict) -> EmotionResult:
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            self.seen.append(np.array(audio, copy=True))
        state["n"] += 1
        return self.script(audio, sr, state["n"])


class FakeTranscriber:
    """An STT engine returning `text` (or `text(audio, sr)`), optionally slowly."""

    name = "fake"

    def __init__(self, text: str | Callable[[np.ndarray, int], str] = "", delay_s: float = 0.0):
        self.text = text
        self.delay_s = delay_s

    def transcribe(self, audio: np.ndarray, sr: int) -> Transcript:
        if self.delay_s:
            time.sleep(self.delay_s)
        text = self.text(audio, sr) if callable(self.text) else self.text
        return Transcript(text=text, engine=self.name)


def engines(emotion: FakeEmotion | None = None, transcriber: object | None = None) -> Engines:
    return Engines(emotion=emotion or FakeEmotion(), transcriber=transcriber, load_s=0.0)


class ScriptedSource:
    """A capture 'device': the given frames as 20 ms chunks, then silence until closed.

    Silence is paced (1 ms per chunk) so commands can interleave; `fail_after` raises like a
    vanished USB device.
    """

    sample_rate = 16000
    chunk = 320

    def __init__(
        self,
        agent: Sequence[float] | None = None,
        customer: Sequence[float] | None = None,
        fail_after: int | None = None,
    ):
        self.agent = np.zeros(0, np.float32) if agent is None else np.asarray(agent, np.float32)
        self.customer = (
            np.zeros(0, np.float32) if customer is None else np.asarray(customer, np.float32)
        )
        self.overruns = 0
        self.fail_after = fail_after
        self.closed = False

    def chunks(self):
        i, n, k = 0, len(self.customer), self.chunk
        zero = np.zeros(k, np.float32)
        while not self.closed:
            if self.fail_after is not None and i >= self.fail_after:
                raise OSError("device vanished")
            s = i * k
            if s < n:
                a, c = self.agent[s : s + k], self.customer[s : s + k]
                if len(c) < k:
                    a, c = np.pad(a, (0, k - len(a))), np.pad(c, (0, k - len(c)))
            else:
                a = c = zero
                time.sleep(0.001)
            i += 1
            yield {"agent": a, "customer": c}

    def close(self) -> None:
        self.closed = True
