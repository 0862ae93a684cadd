"""Relationship health across calls, per customer and per segment.

Each ended call with a customer score contributes its mean customer sentiment and enthusiasm
(a call without scores is skipped: it says nothing about the customer, so it must not count as
a neutral 0). Two exponentially weighted means (fast and slow) give level and trend; a
one-sided CUSUM against the slow mean detects a downward shift a few calls after it starts
while ignoring single bad calls; the slow mean's level below `LEVEL_FLOOR` is a risk of its own
(a customer who is negative on every call shows no shift, yet is at risk); sustained enthusiasm
gives advocacy. Segments (a tag from call metadata) get a two-sided CUSUM across all their
customers' calls, so a shift that no single customer shows still surfaces.

`update_customer` folds one call into the stored state (the box, in call order);
`replay_customer` folds a whole history (the CRM bridge, which receives the calls of several
boxes in any order and recomputes from the calls sorted by time); `customer_signals` compares
two states, so both raise the same signals on the same transitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FAST, SLOW = 0.5, 0.2
"""EWMA weights of the newest call."""
CUSUM_K, CUSUM_H = 0.12, 0.45
"""CUSUM slack (ignored drift per call) and decision interval, in sentiment units."""
CUSUM_CLIP = 0.35
HISTORY = 20
LEVEL_FLOOR, LEVEL_SPAN = -0.05, 0.3
"""Level risk: 0 at a slow mean of LEVEL_FLOOR, 1 at LEVEL_FLOOR - LEVEL_SPAN (-0.35). Fitted to
emotion model 1.3's scale, where valence comes from the words first and a confident voice is
needed to move it: polite real calls average above 0 (AWS call 40: +0.16), the demo's acted
anger -0.24."""
LEVEL_MIN_CALLS = 3
"""Scored calls before the level counts (one bad first call is not a relationship)."""
AT_RISK = 0.5
"""Level risk from which a persistently negative customer is `at_risk` (slow mean <= -0.20)."""


@dataclass(frozen=True)
class Signal:
    """A cross-call finding worth an alert, with its plain-language reason and evidence."""

    rule: str
    signal: str
    action: str
    severity: str
    value: float
    reason: str
    evidence: dict = field(default_factory=dict)


def _state_name(n: int, health: float, trend: float, cusum: float, level: float) -> str:
    if n < 2:
        return "new"
    if cusum > CUSUM_H or health < 0.3 or level >= AT_RISK:
        return "at_risk"
    if trend < -0.08 and cusum > 0.6 * CUSUM_H:
        return "declining"
    if trend > 0.08:
        return "improving"
    return "stable"


def has_score(summary: dict) -> bool:
    """Whether a call summary carries a customer sentiment (else the call is skipped)."""
    return summary.get("sentiment_mean") is not None


def level_risk(slow: float, n: int) -> float:
    """Risk from a persistently negative level, whatever the trend."""
    if n < LEVEL_MIN_CALLS:
        return 0.0
    return float(np.clip((LEVEL_FLOOR - slow) / LEVEL_SPAN, 0.0, 1.0))


def update_customer(
    prev: dict | None, call_id: str, summary: dict, ts: float
) -> tuple[dict, list[Signal]]:
    """New relationship state after one scored call; `prev` is the stored `detail` (or None).

    Raises ValueError for a call without scores (`has_score`): callers skip those."""
    new = _fold(prev, call_id, summary, ts)
    return new, customer_signals(prev, new)


def replay_customer(calls: list[tuple[str, dict, float]]) -> dict | None:
    """The state after `calls` ((call_id, summary, ts) in time order); unscored calls skipped."""
    state = None
    for call_id, summary, ts in calls:
        if has_score(summary):
            state = _fold(state, call_id, summary, ts)
    return state


def _fold(prev: dict | None, call_id: str, summary: dict, ts: float) -> dict:
    if not has_score(summary):
        raise ValueError(f"call {call_id} has no customer sentiment: skip it")
    d = dict(prev or {})
    x = float(summary["sentiment_mean"])
    e = summary.get("enthusiasm")
    e = 0.0 if e is None else float(e)
    n = int(d.get("calls", 0)) + 1
    if n == 1:
        fast = slow = x
        cusum = 0.0
    else:
        slow_prev = float(d["slow"])
        # one call can add at most CUSUM_CLIP: a single awful call is an incident, not a trend
        cusum = max(0.0, float(d["cusum"]) + min(slow_prev - x, CUSUM_CLIP) - CUSUM_K)
        fast = (1 - FAST) * float(d["fast"]) + FAST * x
        slow = (1 - SLOW) * slow_prev + SLOW * x
    history = list(d.get("history", []))[-(HISTORY - 1) :] + [
        {
            "call_id": call_id,
            "sentiment": round(x, 4),
            "enthusiasm": round(e, 4),
            "ts": round(ts, 1),
        }
    ]
    trend = float(np.clip(fast - slow, -1, 1))
    level = level_risk(slow, n)
    risk = max(float(1.0 - math.exp(-cusum / (CUSUM_H * 0.6))), level)
    health = float(np.clip((0.5 + 0.5 * fast) * (1.0 - 0.35 * risk), 0, 1))
    recent = history[-3:]
    advocacy = 0.0
    if len(recent) >= 3:
        ent = float(np.mean([h["enthusiasm"] for h in recent]))
        pos = float(np.mean([h["sentiment"] > 0.15 for h in recent]))
        advocacy = float(np.clip(ent * pos * 1.3, 0, 1))
    alerted = dict(d.get("alerted", {}))
    if advocacy >= 0.6 and not alerted.get("advocacy"):
        alerted["advocacy"] = call_id
    return {
        "calls": n,
        "fast": fast,
        "slow": slow,
        "cusum": cusum,
        "level": round(level, 4),
        "history": history,
        "health": round(health, 4),
        "trend": round(trend, 4),
        "risk": round(risk, 4),
        "advocacy": round(advocacy, 4),
        "state": _state_name(n, health, trend, cusum, level),
        "alerted": alerted,
    }


def customer_signals(prev: dict | None, new: dict) -> list[Signal]:
    """Signals of the move from `prev` to `new`: entering declining/at risk, first advocacy."""
    signals: list[Signal] = []
    history = new["history"]
    calls = [h["call_id"] for h in history[-4:]]
    sentiments = [h["sentiment"] for h in history[-4:]]
    state = new["state"]
    prev_state = (prev or {}).get("state", "new")
    if state in ("declining", "at_risk") and prev_state not in ("declining", "at_risk"):
        negative = new.get("level", 0.0) >= AT_RISK and new["cusum"] <= CUSUM_H
        what = "persistently negative" if negative else f"relationship {state.replace('_', ' ')}"
        signals.append(
            Signal(
                rule="relationship_negative" if negative else "relationship_declining",
                signal="relationship_risk",
                action="intervention_recommended",
                severity="critical" if state == "at_risk" else "warning",
                value=round(new["risk"], 3),
                reason=f"{what}: sentiment over the last calls {_fmt(sentiments)}; intervention recommended",
                evidence={
                    "calls": calls,
                    "sentiments": sentiments,
                    "trend": round(new["trend"], 3),
                    "cusum": round(new["cusum"], 3),
                    "level": new.get("level", 0.0),
                },
            )
        )
    first = new.get("alerted", {}).get("advocacy")
    if first and not (prev or {}).get("alerted", {}).get("advocacy"):
        enth = [h["enthusiasm"] for h in history[-3:]]
        signals.append(
            Signal(
                rule="likely_advocate",
                signal="advocacy",
                action="follow_up",
                severity="info",
                value=round(new["advocacy"], 3),
                reason=f"sustained enthusiasm over {len(enth)} calls {_fmt(enth)}: likely advocate; ask for a referral",
                evidence={"calls": calls[-3:], "enthusiasm": enth},
            )
        )
    return signals


def update_segment(
    prev: dict | None, segment: str, call_id: str, sentiment: float | None
) -> tuple[dict, list[Signal]]:
    """Two-sided CUSUM of call sentiment across a segment's customers."""
    d = dict(prev or {"n": 0, "mean": 0.0, "lo": 0.0, "hi": 0.0, "recent": []})
    if sentiment is None:
        return d, []
    x = float(sentiment)
    n = d["n"] + 1
    baseline = d["mean"] if d["n"] else x
    lo = max(0.0, d["lo"] + (baseline - x) - CUSUM_K)
    hi = max(0.0, d["hi"] + (x - baseline) - CUSUM_K)
    mean = baseline + (x - baseline) / min(n, 20)  # running mean with a 20-call memory
    recent = (d["recent"] + [{"call_id": call_id, "sentiment": round(x, 3)}])[-6:]
    signals = []
    h = CUSUM_H * 2  # segments mix customers: demand more evidence than for one customer
    if n >= 4 and (lo > h or hi > h):
        direction = "down" if lo > h else "up"
        signals.append(
            Signal(
                rule="segment_shift",
                signal="segment_shift",
                action="investigate",
                severity="warning",
                value=round(max(lo, hi), 3),
                reason=f"segment {segment} sentiment shifting {direction} (baseline {baseline:+.2f}, recent {_fmt([r['sentiment'] for r in recent])}); investigate cause",
                evidence={"segment": segment, "calls": [r["call_id"] for r in recent]},
            )
        )
        lo = hi = 0.0
        mean = x
    return {"n": n, "mean": mean, "lo": lo, "hi": hi, "recent": recent}, signals


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:+.2f}" for v in values) + "]"
