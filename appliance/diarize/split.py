"""Two speakers on one channel, split into agent and customer before emotion.

A mono channel (a position wired to one line, a SIPREC recorder's mixed stream, a mono
recording) carries both parties; emotion must still see the customer only. `MonoSplitter`
decides per stretch of speech who speaks, online, with a bounded delay:

* frames of 10 ms are speech when they stand `vad.threshold_db` above a tracked noise floor;
* a stretch closes after `window_s` of speech, or at a pause of 0.3 s after at least 0.3 s of
  speech (turns mostly change at pauses);
* its embedding is the mean and standard deviation of 19 MFCCs (c1-c19, the Numba frontend)
  over its speech frames, z-scored by the running statistics of the call's stretches so far;
  MFCC statistics carry the voice and, on a telephone mix, each party's line and handset;
* the agent is the enrolment clip's voice (per position, `positions[].agent_enrolment`), else
  whoever speaks first; a stretch farther than `threshold` from the agent (cosine distance)
  opens the customer; once both exist each stretch goes to the nearer, whose centroid follows.

The stretch's audio, pauses included, goes to its speaker's channel, silence to the other:
the pipeline's VAD then cuts utterances per speaker as on a stereo line. Measured on mono
mixes of stereo calls (tests/test_diarize.py; docs/voip.md has the figures).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from appliance.config import DiarizeConfig, VadConfig

FRAME_S = 0.01
N_MFCC = 20
PAUSE_S = 0.3
MIN_SPEECH_S = 0.3
MIN_STRETCHES = 5
"""Without enrolment, stretches before the clustering may split (with fewer, two stretches of
one voice always look like two speakers); until then the first speaker holds the line."""
MAX_STRETCHES = 600
"""Stretches the clustering keeps (about ten minutes of speech): its cost stays bounded."""
SILENCE_FLUSH_S = 0.5
"""Pending silence longer than this goes out at once (scores are not held back in pauses)."""


def _embedding(audio: np.ndarray, sr: int) -> np.ndarray | None:
    from appliance import features

    if len(audio) < int(0.2 * sr):
        return None
    m = features.mfcc(audio.astype(np.float32), sr, n_mfcc=N_MFCC)[:, 1:]
    return np.concatenate([m.mean(0), m.std(0)]).astype(np.float64)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return 1.0 - float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


class MonoSplitter:
    """mono chunks in -> {"agent": ..., "customer": ...} chunks out, delayed by a stretch."""

    def __init__(
        self,
        sr: int,
        vad: VadConfig | None = None,
        cfg: DiarizeConfig | None = None,
        enrolment: np.ndarray | str | None = None,
    ):
        self.sr = sr
        self.vad = vad or VadConfig()
        self.cfg = cfg or DiarizeConfig()
        self.hop = int(round(sr * FRAME_S))
        self._pending = np.zeros(0, np.float32)
        self._frames: list[np.ndarray] = []
        self._speech: list[bool] = []
        self._floor_db = self.vad.min_level_db - 10.0
        self._all: list[np.ndarray] = []
        self._n_enrol = 0
        self.current = "agent"
        self.labels: list[tuple[float, float, str]] = []
        """(start s, end s, speaker) of every stretch decided (evaluation and tests)."""
        self._t = 0
        self.enrolled = False
        if enrolment is not None:
            self._enrol(enrolment)

    # -- enrolment -----------------------------------------------------------------------------

    def _enrol(self, enrolment: np.ndarray | str) -> None:
        if isinstance(enrolment, str):
            from appliance.capture.wav import read_wav, to_pipeline_rate

            rec = read_wav(enrolment)
            x, sr = to_pipeline_rate(rec.channels[0], rec.sample_rate)
            if sr != self.sr:
                from appliance.capture.resample import resample

                x = resample(x, sr, self.sr)
        else:
            x = np.asarray(enrolment, np.float32)
        probe = MonoSplitter(self.sr, self.vad, self.cfg)
        for stretch in probe._stretches(x):
            e = _embedding(stretch, self.sr)
            if e is not None:
                self._all.append(e)
        self._n_enrol = len(self._all)
        if not self._all:
            raise ValueError("the agent enrolment clip holds no speech")
        self.enrolled = True

    def _stretches(self, x: np.ndarray) -> Iterable[np.ndarray]:
        """Speech of each stretch a whole signal would be cut into (for enrolment)."""
        out: list[np.ndarray] = []
        self._decide = lambda n: out.append(self._speech_audio(n)) or self._drop(n)  # type: ignore[method-assign]
        self.push(x)
        return out

    # -- streaming ---------------------------------------------------------------------------------

    def push(self, chunk: np.ndarray) -> list[dict[str, np.ndarray]]:
        x = np.concatenate([self._pending, np.asarray(chunk, np.float32)])
        n = len(x) // self.hop
        self._pending = x[n * self.hop :]
        out: list[dict[str, np.ndarray]] = []
        for i in range(n):
            f = x[i * self.hop : (i + 1) * self.hop]
            self._frames.append(f)
            self._speech.append(self._is_speech(f))
            out.extend(self._maybe_decide())
        return out

    def flush(self) -> list[dict[str, np.ndarray]]:
        out = self._decide(len(self._frames)) if self._frames else []
        if len(self._pending):
            self._frames.append(self._pending)
            self._speech.append(False)
            self._pending = np.zeros(0, np.float32)
            out += self._route(1, self.current)
        return out

    def _is_speech(self, f: np.ndarray) -> bool:
        db = 10.0 * np.log10(float(np.mean(f * f)) + 1e-12)
        # the floor follows quiet frames fast and loud ones slowly (as the VAD's tracker does)
        rate = 0.1 if db < self._floor_db else 0.002
        self._floor_db += rate * (db - self._floor_db)
        return db > max(self._floor_db + self.vad.threshold_db, self.vad.min_level_db)

    def _maybe_decide(self) -> list[dict[str, np.ndarray]]:
        speech = sum(self._speech)
        per_s = 1.0 / FRAME_S
        if speech == 0:
            if len(self._frames) >= SILENCE_FLUSH_S * per_s:
                return self._route(len(self._frames), self.current)
            return []
        trailing = 0
        for s in reversed(self._speech):
            if s:
                break
            trailing += 1
        if speech >= self.cfg.window_s * per_s or (
            trailing >= PAUSE_S * per_s and speech >= MIN_SPEECH_S * per_s
        ):
            return self._decide(len(self._frames))
        if trailing >= PAUSE_S * per_s:  # a click: too little speech to tell, keep it with the last
            return self._route(len(self._frames), self.current)
        return []

    def _speech_audio(self, n: int) -> np.ndarray:
        sel = [f for f, s in zip(self._frames[:n], self._speech[:n], strict=True) if s]
        return np.concatenate(sel) if sel else np.zeros(0, np.float32)

    def _drop(self, n: int) -> list:
        del self._frames[:n], self._speech[:n]
        return []

    def _decide(self, n: int) -> list[dict[str, np.ndarray]]:
        e = _embedding(self._speech_audio(n), self.sr)
        speaker = self.current if e is None else self._classify(e)
        return self._route(n, speaker)

    def _classify(self, e: np.ndarray) -> str:
        """Two-means over every stretch so far (z-scored by their statistics), re-run at each
        decision so early stretches stop steering; the agent's cluster is the enrolment's or
        the first stretch's. Until the two centroids lie `threshold` apart, one voice only."""
        self._all.append(e)
        if len(self._all) > MAX_STRETCHES:  # long calls: the first ones (the anchor) and recent
            keep = max(1, self._n_enrol)
            del self._all[keep : keep + len(self._all) - MAX_STRETCHES]
        e_all = np.array(self._all)
        if len(e_all) - self._n_enrol < MIN_STRETCHES and not self.enrolled:
            return "agent"
        z = (e_all - e_all.mean(0)) / (e_all.std(0) + 1e-6)
        zn = z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-9)
        seed = z[: max(1, self._n_enrol)].mean(0)
        far = z[int(np.argmin(zn @ seed))]
        cents = np.array([seed, far])
        for _ in range(10):
            cn = cents / (np.linalg.norm(cents, axis=1, keepdims=True) + 1e-9)
            assign = np.argmax(zn @ cn.T, axis=1)
            if assign.min() == assign.max():
                break
            new = np.array([z[assign == k].mean(0) for k in (0, 1)])
            if np.allclose(new, cents):
                break
            cents = new
        if (
            min(np.bincount(assign, minlength=2)) < 2
            or _cosine(cents[0], cents[1]) < self.cfg.threshold
        ):
            return "agent"
        ref = assign[: max(1, self._n_enrol)]
        agent_cluster = int(round(ref.mean()))
        return "agent" if assign[-1] == agent_cluster else "customer"

    def _route(self, n: int, speaker: str) -> list[dict[str, np.ndarray]]:
        audio = np.concatenate(self._frames[:n])
        del self._frames[:n], self._speech[:n]
        self.current = speaker
        start = self._t / self.sr
        self._t += len(audio)
        self.labels.append((start, self._t / self.sr, speaker))
        other = "customer" if speaker == "agent" else "agent"
        return [{speaker: audio, other: np.zeros(len(audio), np.float32)}]


class DiarizedSource:
    """A position's mono source (`positions[].mono`) split into agent and customer.

    The clustering restarts after `reset_after_s` of silence (a new call, a new customer);
    the enrolment, when given, stays."""

    def __init__(
        self,
        source,
        vad: VadConfig,
        cfg: DiarizeConfig,
        enrolment: str | None,
        reset_after_s: float,
    ):
        self.source = source
        self.sample_rate = source.sample_rate
        self._make = lambda: MonoSplitter(self.sample_rate, vad, cfg, enrolment or None)
        self.splitter = self._make()
        self.reset_after_s = reset_after_s
        self._quiet_s = 0.0

    @property
    def overruns(self) -> int:
        return int(getattr(self.source, "overruns", 0) or 0)

    def chunks(self):
        for chunk in self.source.chunks():
            mono = chunk["customer"]
            parts = self.splitter.push(mono)
            self._quiet_s = (
                0.0 if any(self.splitter._speech) else self._quiet_s + len(mono) / self.sample_rate
            )
            if self._quiet_s >= self.reset_after_s and self.splitter._all:
                parts += self.splitter.flush()
                self.splitter = self._make()
                self._quiet_s = 0.0
            yield from parts

    def close(self) -> None:
        self.source.close()
