"""From utterances to call scores: fused sentiment, trajectory, enthusiasm, health, timing.

All scores are derived from numbers the earlier stages produced; nothing here looks at audio.
The agent channel contributes timing only (talk time, overtalk, silence), never sentiment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from appliance.types import EMOTION_LABELS, EmotionResult

TEXT_WEIGHT_FULL = 0.6
"""Weight of text sentiment for an utterance of 4+ words (lexicon scores are noisy on short ones)."""
UNCERTAIN_FACTOR = 0.35
"""How much an `uncertain` acoustic estimate still counts, relative to a confident one."""


@dataclass(frozen=True)
class FusedSentiment:
    value: float | None
    """Valence/sentiment in [-1, 1], None when neither source said anything."""
    confidence: float
    """0..1: how much evidence stands behind `value`."""


def fuse(
    emotion: EmotionResult | None, text_sentiment: float | None, n_words: int
) -> FusedSentiment:
    """Weighted mean of acoustic valence and text sentiment; uncertain acoustics weigh less."""
    parts: list[tuple[float, float]] = []
    if emotion is not None:
        w = float(emotion.confidence) * (UNCERTAIN_FACTOR if emotion.uncertain else 1.0)
        parts.append((float(emotion.valence), max(w, 0.05)))
    # VADER's compound is 0 for text without sentiment words: that is "no opinion", not "neutral evidence".
    if text_sentiment is not None and n_words > 0 and abs(text_sentiment) > 0.05:
        w = TEXT_WEIGHT_FULL * min(1.0, n_words / 4.0)
        parts.append((float(text_sentiment), w))
    if not parts:
        return FusedSentiment(None, 0.0)
    total = sum(w for _, w in parts)
    value = sum(v * w for v, w in parts) / total
    return FusedSentiment(float(np.clip(value, -1, 1)), float(min(1.0, total)))


def enthusiasm_of(emotion: EmotionResult | None, sentiment: float | None) -> float | None:
    """0..1: high arousal with positive valence. Low arousal or negative valence pull it down."""
    if emotion is None:
        return None
    a = (emotion.arousal + 1.0) / 2.0
    v = ((sentiment if sentiment is not None else emotion.valence) + 1.0) / 2.0
    return float(np.clip(a * v * 1.6, 0.0, 1.0))


def slope_per_minute(times: list[float], values: list[float]) -> float | None:
    """Least-squares slope (units per minute); None for fewer than 3 points or no time spread."""
    if len(values) < 3:
        return None
    t = np.asarray(times, float)
    y = np.asarray(values, float)
    if np.ptp(t) < 1e-6:
        return None
    t = t - t.mean()
    return float(60.0 * (t @ (y - y.mean())) / (t @ t))


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def overlap(
    a: list[tuple[float, float]], b: list[tuple[float, float]], min_s: float = 0.25
) -> tuple[int, float]:
    """(count, seconds) of stretches where both speakers talk, ignoring back-channel blips < min_s."""
    count, secs = 0, 0.0
    ua, ub = _union(a), _union(b)
    for s1, e1 in ua:
        for s2, e2 in ub:
            d = min(e1, e2) - max(s1, s2)
            if d >= min_s:
                count += 1
                secs += d
    return count, secs


@dataclass
class ScoredUtterance:
    """What the scorer keeps of one utterance."""

    index: int
    speaker: str
    start: float
    end: float
    emotion: EmotionResult | None
    sentiment: float | None
    sentiment_confidence: float
    n_words: int
    key_phrases: list[str] = field(default_factory=list)

    @property
    def mid(self) -> float:
        return 0.5 * (self.start + self.end)


@dataclass
class CallScorer:
    """Running call metrics, updated per utterance; `summary()` is the call payload's body."""

    call_type: str = "support"
    utterances: list[ScoredUtterance] = field(default_factory=list)
    duration: float = 0.0

    def add(self, u: ScoredUtterance) -> None:
        self.utterances.append(u)
        self.utterances.sort(key=lambda x: (x.start, x.index))
        self.duration = max(self.duration, u.end)

    # -- series ------------------------------------------------------------------------

    def customer(self) -> list[ScoredUtterance]:
        return [u for u in self.utterances if u.speaker == "customer"]

    def sentiment_series(self) -> tuple[list[float], list[float]]:
        pts = [(u.mid, u.sentiment) for u in self.customer() if u.sentiment is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    def enthusiasm_series(self) -> tuple[list[float], list[float]]:
        pts = []
        for u in self.customer():
            e = enthusiasm_of(u.emotion, u.sentiment)
            if e is not None:
                pts.append((u.mid, e))
        return [p[0] for p in pts], [p[1] for p in pts]

    # -- live signals (rules read these) ----------------------------------------------

    def signals(self, window: int = 6) -> dict[str, float | None]:
        t, s = self.sentiment_series()
        te, e = self.enthusiasm_series()
        cust = self.customer()
        timing = self.timing()
        neg_streak = 0
        for v in reversed(s):
            if v < -0.2:
                neg_streak += 1
            else:
                break
        return {
            "sentiment": float(np.mean(s[-3:])) if s else None,
            "sentiment_slope": slope_per_minute(t[-window:], s[-window:]),
            "enthusiasm": float(np.mean(e[-3:])) if e else None,
            "enthusiasm_slope": slope_per_minute(te[-window:], e[-window:]),
            "arousal": float(np.mean([u.emotion.arousal for u in cust[-3:] if u.emotion]))
            if any(u.emotion for u in cust[-3:])
            else None,
            "overtalk_s": timing["overtalk_s"],
            "silence_s": timing["longest_silence_s"],
            "health": self.health(),
            "negative_streak": float(neg_streak),
            "key_phrase": float(sum(len(u.key_phrases) for u in cust)),
            "customer_utterances": float(len(cust)),
        }

    def timing(self) -> dict[str, float]:
        agent = [(u.start, u.end) for u in self.utterances if u.speaker == "agent"]
        cust = [(u.start, u.end) for u in self.utterances if u.speaker == "customer"]
        agent_s = sum(e - s for s, e in _union(agent))
        cust_s = sum(e - s for s, e in _union(cust))
        n_over, over_s = overlap(agent, cust)
        speech = _union(agent + cust)
        gaps = [b[0] - a[1] for a, b in zip(speech, speech[1:], strict=False)]
        return {
            "agent_talk_s": round(agent_s, 2),
            "customer_talk_s": round(cust_s, 2),
            "talk_listen_ratio": round(agent_s / cust_s, 3) if cust_s > 0 else None,
            "overtalk_count": n_over,
            "overtalk_s": round(over_s, 2),
            "longest_silence_s": round(max(gaps, default=0.0), 2),
        }

    def health(self) -> float | None:
        """0..1 conversation health: sentiment level and direction, balance, interruptions, silences."""
        t, s = self.sentiment_series()
        if not s:
            return None
        timing = self.timing()
        level = (float(np.mean(s)) + 1) / 2
        end = (float(np.mean(s[-3:])) + 1) / 2
        ratio = timing["talk_listen_ratio"] or 1.0
        # a check-in call is healthy when the customer talks at least as much as the agent
        balance = float(np.clip(1.3 - 0.3 * ratio, 0.0, 1.0))
        minutes = max(self.duration / 60.0, 0.5)
        interrupt = float(np.clip(1.0 - timing["overtalk_count"] / (4.0 * minutes), 0.0, 1.0))
        silence = float(np.clip(1.0 - max(0.0, timing["longest_silence_s"] - 5.0) / 20.0, 0.0, 1.0))
        return round(0.35 * level + 0.3 * end + 0.15 * balance + 0.1 * interrupt + 0.1 * silence, 4)

    def summary(self) -> dict:
        """Call metrics: numbers only, ready for the call payload."""
        t, s = self.sentiment_series()
        te, e = self.enthusiasm_series()
        cust = self.customer()
        labels = [u.emotion.label for u in cust if u.emotion is not None]
        mix = (
            {k: round(labels.count(k) / len(labels), 3) for k in EMOTION_LABELS if labels.count(k)}
            if labels
            else {}
        )
        words = sum(u.n_words for u in cust)
        timing = self.timing()
        wpm = (
            round(60.0 * words / timing["customer_talk_s"], 1)
            if timing["customer_talk_s"] > 0 and words
            else None
        )
        k = min(3, len(s))
        return {
            "duration": round(self.duration, 2),
            "customer_utterances": len(cust),
            "agent_utterances": len(self.utterances) - len(cust),
            "sentiment_mean": _r(np.mean(s)) if s else None,
            "sentiment_start": _r(np.mean(s[:k])) if s else None,
            "sentiment_end": _r(np.mean(s[-k:])) if s else None,
            "sentiment_min": _r(min(s)) if s else None,
            "sentiment_slope": _r(slope_per_minute(t, s)),
            "enthusiasm": _r(np.mean(e)) if e else None,
            "health": self.health(),
            **timing,
            "customer_wpm": wpm,
            "emotion_mix": mix,
        }

    def trajectory(self) -> list[dict]:
        """The sentiment time series (kept on the box for the panel)."""
        t, s = self.sentiment_series()
        return [{"t": round(a, 2), "sentiment": round(b, 3)} for a, b in zip(t, s, strict=True)]


def _r(v: float | None) -> float | None:
    return None if v is None else round(float(v), 4)
