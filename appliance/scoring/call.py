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
ACOUSTIC_WEIGHT_WITH_TEXT = 0.25
"""Weight of acoustic valence (times its confidence) when there is a transcript: valence comes from
the words first. An emotion model trained on acted speech is weak on valence out of domain (on
real calls its valence agreed with the text's sign about as often as chance)."""
ACOUSTIC_WEIGHT_ALONE = 0.5
"""Weight of acoustic valence (times its confidence) when there is no transcript."""
NEUTRAL_TEXT_WEIGHT = 0.15
"""Weight of a transcript of 3+ words without sentiment words, as evidence of a neutral state."""
MIN_EVIDENCE_WORDS = 3
"""Utterances with fewer words ("mm-hmm", "okay", "thank you", "bye") are backchannels: they do not
enter the call's sentiment series, so a few short utterances cannot move it or raise an alert."""
MIN_EVIDENCE_S_NO_TEXT = 1.5
"""Without a transcript, an utterance counts as evidence from this duration on."""
STRONG_TEXT = 0.5
"""A text sentiment at or below -STRONG_TEXT is one strong negative cue on its own."""
WEAK_ACOUSTIC = 0.2
"""A certain acoustic valence at or below -WEAK_ACOUSTIC is a (weak) negative cue; a neutral label's
few hundredths below 0 are not."""
CALM_VOICE = 0.85
"""A certain neutral label at or above this confidence, with low arousal, is a clearly calm voice."""
STRONG_ACOUSTIC = 0.7
"""A confident (>= this) acoustic label with valence <= -0.5 is one strong negative cue on its own."""


@dataclass(frozen=True)
class FusedSentiment:
    value: float | None
    """Valence/sentiment in [-1, 1], None when neither source said anything."""
    confidence: float
    """0..1: how much evidence stands behind `value`."""


def fuse(
    emotion: EmotionResult | None, text_sentiment: float | None, n_words: int
) -> FusedSentiment:
    """Weighted mean of acoustic valence and text sentiment, words first: acoustic valence weighs
    `ACOUSTIC_WEIGHT_WITH_TEXT` x its confidence next to a transcript (`ACOUSTIC_WEIGHT_ALONE`
    without one) and an `uncertain` acoustic estimate does not count at all."""
    parts: list[tuple[float, float]] = []
    if emotion is not None and not emotion.uncertain:
        k = ACOUSTIC_WEIGHT_WITH_TEXT if n_words > 0 else ACOUSTIC_WEIGHT_ALONE
        parts.append((float(emotion.valence), max(k * float(emotion.confidence), 0.01)))
    # VADER's compound is 0 for text without sentiment words: on a short utterance that is "no
    # opinion"; a sentence of several words without any is weak evidence of a neutral state.
    if text_sentiment is not None and n_words > 0 and abs(text_sentiment) > 0.05:
        w = TEXT_WEIGHT_FULL * min(1.0, n_words / 4.0)
        parts.append((float(text_sentiment), w))
    elif text_sentiment is not None and n_words >= MIN_EVIDENCE_WORDS:
        parts.append((0.0, NEUTRAL_TEXT_WEIGHT * min(1.0, n_words / 6.0)))
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
    text_sentiment: float | None = None
    """The transcript's own sentiment (VADER), when the pipeline passes it."""

    @property
    def mid(self) -> float:
        return 0.5 * (self.start + self.end)

    @property
    def is_evidence(self) -> bool:
        """Long enough to say something about the caller's state (not a backchannel)."""
        if self.n_words > 0:
            return self.n_words >= MIN_EVIDENCE_WORDS
        return self.end - self.start >= MIN_EVIDENCE_S_NO_TEXT

    @property
    def text_cue(self) -> float | None:
        """The words' part of the fused sentiment: `text_sentiment` when the pipeline passes it,
        else recovered from `fuse`'s weights (the acoustic part's weight is known from the emotion
        and the word count, so the rest of the weighted mean is the text's); None without one."""
        if self.text_sentiment is not None or self.sentiment is None:
            return self.text_sentiment
        e, total = self.emotion, self.sentiment_confidence
        w_a, v_a = 0.0, 0.0
        if e is not None and not e.uncertain:
            k = ACOUSTIC_WEIGHT_WITH_TEXT if self.n_words > 0 else ACOUSTIC_WEIGHT_ALONE
            w_a, v_a = max(k * float(e.confidence), 0.01), float(e.valence)
        w_t = total - w_a
        if self.n_words == 0 or w_t < 1e-6:
            return None
        return float(np.clip((self.sentiment * total - v_a * w_a) / w_t, -1, 1))

    @property
    def negative_cues(self) -> int:
        """0, 1 or 2: how strongly this utterance says "negative". 2 = both cues agree (text and a
        certain acoustic label), or one strong cue alone; 1 = one weak cue."""
        e = self.emotion
        acoustic = e is not None and not e.uncertain and e.valence <= -WEAK_ACOUSTIC
        strong_acoustic = acoustic and e.confidence >= STRONG_ACOUSTIC and e.valence <= -0.5
        tc = self.text_cue
        text = tc is not None and tc < -0.05
        # negative words said in a clearly calm voice (a problem described, not a caller upset)
        # count as one cue, not as a strong one
        calm_voice = (
            e is not None
            and not e.uncertain
            and e.label == "neutral"
            and e.confidence >= CALM_VOICE
            and e.arousal < 0
        )
        strong_text = tc is not None and tc <= -STRONG_TEXT and not calm_voice
        if (acoustic and text) or strong_acoustic or strong_text:
            return 2
        return int(acoustic or text)


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

    def evidence(self) -> list[ScoredUtterance]:
        """Customer utterances that carry evidence: a sentiment and not a backchannel."""
        return [u for u in self.customer() if u.sentiment is not None and u.is_evidence]

    def sentiment_series(self) -> tuple[list[float], list[float]]:
        pts = [(u.mid, u.sentiment) for u in self.evidence()]
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
        level = float(np.mean(s[-3:])) if s else None
        slope = slope_per_minute(t[-window:], s[-window:])
        recent = self.evidence()[-4:]
        cues = sum(u.negative_cues >= 2 for u in recent)
        return {
            "sentiment": level,
            "sentiment_slope": slope,
            # sustained evidence: at least two recent utterances negative by both cues (or one
            # strong cue each); otherwise the alert signals stay at 0 (nothing to alert on)
            "negative_evidence": float(cues),
            "upset": min(level, 0.0) if level is not None and cues >= 2 else 0.0,
            "decline": slope
            if slope is not None and level is not None and level < 0 and cues >= 2
            else 0.0,
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
