"""Declarative alert rules over live call signals, with hysteresis, cooldown and a budget.

The default sentiment alerts watch `upset` and `decline` (`appliance.scoring.CallScorer.signals`):
they stay at 0 unless recent customer utterances carry sustained negative evidence (two of the
last four negative by both the words and the voice, or by one strong cue each), and backchannels
never count, so a polite call with a few oddly scored "okay"s or "thank you"s raises nothing. As
the signal itself needs several utterances, those two rules fire on the first evaluation that holds
(`duration` 1); a second consecutive one would only delay an alert that is already sustained.

A rule fires when its condition held for `duration` consecutive customer utterances (after
`min_utterances`), then stays quiet until the signal crosses back past `clear` (hysteresis)
and `cooldown` seconds passed. A call raises at most `budget_per_call` alerts: supervisors
who get ten alerts a call stop reading them.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

from appliance.config import RuleConfig

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}

DEFAULT_RULES: tuple[RuleConfig, ...] = (
    RuleConfig(
        name="sentiment_declining",
        signal="decline",
        op="<",
        threshold=-0.35,
        clear=-0.05,
        min_utterances=4,
        duration=1,
        cooldown=90,
        severity="warning",
        action="intervention_recommended",
    ),
    RuleConfig(
        name="customer_upset",
        signal="upset",
        op="<",
        threshold=-0.4,
        clear=-0.1,
        min_utterances=3,
        duration=1,
        cooldown=120,
        severity="critical",
        action="escalate",
    ),
    RuleConfig(
        name="enthusiasm_declining",
        signal="enthusiasm_slope",
        op="<",
        threshold=-0.3,
        clear=0.0,
        min_utterances=4,
        duration=2,
        cooldown=120,
        severity="warning",
        action="intervention_recommended",
        call_types=["sales"],
    ),
    RuleConfig(
        name="high_commitment",
        signal="enthusiasm",
        op=">",
        threshold=0.62,
        clear=0.45,
        min_utterances=3,
        duration=3,
        cooldown=300,
        severity="info",
        action="accelerate",
        call_types=["sales"],
    ),
    RuleConfig(
        name="overtalk",
        signal="overtalk_s",
        op=">",
        threshold=10.0,
        clear=None,
        min_utterances=1,
        duration=1,
        cooldown=600,
        severity="info",
        action="coach",
    ),
    RuleConfig(
        name="escalation_phrase",
        signal="key_phrase",
        op=">=",
        threshold=1.0,
        clear=None,
        min_utterances=1,
        duration=1,
        cooldown=600,
        severity="warning",
        action="escalate",
    ),
)

# The gated signals are published under the contract's name of the signal they gate (the MQTT
# schema lists the signal names a consumer may see; `upset` is a sentiment level, `decline` a slope).
PUBLISHED_SIGNAL = {
    "upset": "sentiment",
    "decline": "sentiment_slope",
    "negative_evidence": "negative_streak",
}

REASONS = {
    "sentiment_slope": "customer sentiment falling ({value:+.2f}/min)",
    "sentiment": "customer sentiment negative ({value:+.2f})",
    "enthusiasm_slope": "enthusiasm declining ({value:+.2f}/min)",
    "enthusiasm": "high emotional commitment (enthusiasm {value:.2f})",
    "arousal": "customer agitated (arousal {value:+.2f})",
    "overtalk_s": "agent and customer talking over each other ({value:.0f} s)",
    "silence_s": "long silence ({value:.0f} s)",
    "health": "conversation health low ({value:.2f})",
    "negative_streak": "{value:.0f} negative customer utterances in a row",
    "negative_evidence": "{value:.0f} of the last 4 customer utterances clearly negative",
    "upset": "customer sentiment negative ({value:+.2f}) over several utterances",
    "decline": "customer sentiment falling into the negative ({value:+.2f}/min)",
    "key_phrase": "escalation phrase heard",
}
ACTION_TEXT = {
    "intervention_recommended": "intervention recommended",
    "accelerate": "accelerate timeline",
    "escalate": "escalate to a supervisor",
    "coach": "coach the agent",
    "investigate": "investigate cause",
    "follow_up": "follow up",
}


@dataclass(frozen=True)
class Alert:
    rule: str
    severity: str
    action: str
    signal: str
    value: float
    threshold: float
    at: float
    """Seconds into the call."""
    reason: str
    """Plain-language reason (stays on the box: panel and local API)."""
    evidence: dict = field(default_factory=dict)


@dataclass
class _RuleState:
    streak: int = 0
    armed: bool = True
    last_fired: float | None = None


class RuleEngine:
    """Evaluates rules for one call."""

    def __init__(
        self,
        rules: list[RuleConfig] | tuple[RuleConfig, ...] | None,
        call_type: str,
        budget: int = 3,
    ):
        self.rules = [
            r for r in (rules or DEFAULT_RULES) if not r.call_types or call_type in r.call_types
        ]
        self.budget = budget
        self.fired: list[Alert] = []
        self._state = {r.name: _RuleState() for r in self.rules}

    def evaluate(
        self,
        signals: dict[str, float | None],
        at: float,
        evidence: dict | None = None,
        only: frozenset[str] | None = None,
    ) -> list[Alert]:
        """Call after each customer utterance; returns the alerts that fire now. `only` limits
        the evaluation to rules on those signals (a partial result carries key phrases only,
        and must not advance the streaks of the others)."""
        out: list[Alert] = []
        n = signals.get("customer_utterances") or 0
        for rule in self.rules:
            if only is not None and rule.signal not in only:
                continue
            st = self._state[rule.name]
            value = signals.get(rule.signal)
            if value is None:
                continue
            holds = _OPS[rule.op](value, rule.threshold)
            if not st.armed:
                # hysteresis: re-arm once the signal is back past `clear` (or simply no longer holds)
                st.armed = (not holds) if rule.clear is None else self._crossed_back(rule, value)
                continue
            st.streak = st.streak + 1 if holds else 0
            if not holds or n < rule.min_utterances or st.streak < rule.duration:
                continue
            if st.last_fired is not None and at - st.last_fired < rule.cooldown:
                continue
            if len(self.fired) >= self.budget:
                continue
            st.armed = False
            st.streak = 0
            st.last_fired = at
            reason = REASONS.get(rule.signal, rule.signal).format(value=value)
            alert = Alert(
                rule=rule.name,
                severity=rule.severity,
                action=rule.action,
                signal=PUBLISHED_SIGNAL.get(rule.signal, rule.signal),
                value=round(float(value), 4),
                threshold=rule.threshold,
                at=round(at, 2),
                reason=f"{reason}; {ACTION_TEXT[rule.action]}",
                evidence=dict(evidence or {}),
            )
            self.fired.append(alert)
            out.append(alert)
        return out

    @staticmethod
    def _crossed_back(rule: RuleConfig, value: float) -> bool:
        if rule.op in ("<", "<="):
            return value > rule.clear  # type: ignore[operator]
        return value < rule.clear  # type: ignore[operator]
