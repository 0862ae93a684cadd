"""Rows and MQTT bodies, built by pure functions from what the stages produced.

Nothing here touches SQLite, MQTT, clocks or threads: the writer passes the time and the
customer's published id in, so each builder is a plain mapping that a test can check directly.
Row dicts match the tables of `appliance.store.schema`; bodies match the JSON Schemas of
`appliance.publish.schemas` (the envelope - schema, msg_id, seq, box_id - is added by
`appliance.publish.contract.new_message`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from appliance.scoring.call import ScoredUtterance
from appliance.types import EmotionResult, Transcript, Utterance


def rounded(v: float | None, nd: int = 4) -> float | None:
    """Numbers as published: rounded, None kept."""
    return None if v is None else round(float(v), nd)


@dataclass(frozen=True)
class CallFacts:
    """What the rows of one call share: its id, metadata and the customer's published id."""

    call_id: str
    position: str
    customer_ref: str
    """As the CRM knows it (stored on the box only)."""
    customer_id: str
    """As it leaves the box (pseudonymised unless the policy says otherwise); "" = none."""
    call_type: str
    segment: str
    source: str
    started_at: float
    customer_key: str = ""
    """Id of the pseudonym key (`publish.pseudonym.key_id`); "" when published in clear."""
    sip: tuple[str, str, str] = ("", "", "")
    """SIP Call-ID, caller and callee of a VoIP call (stored on the box only)."""


@dataclass(frozen=True)
class UtteranceScores:
    """One utterance after its stages: emotion, text and the fused, scored view."""

    utterance: Utterance
    emotion: EmotionResult | None
    transcript: Transcript | None
    text_sentiment: float | None
    scored: ScoredUtterance
    key_phrases: list[str]
    wpm: float | None


def utterance_row(s: UtteranceScores, call_id: str, now: float) -> dict:
    """A row of `utterances`."""
    e, u = s.emotion, s.utterance
    return {
        "call_id": call_id,
        "idx": u.index,
        "speaker": u.speaker,
        "start": u.start,
        "end": u.end,
        "emotion_label": e.label if e else None,
        "confidence": e.confidence if e else None,
        "intensity": e.intensity if e else None,
        "arousal": e.arousal if e else None,
        "valence": e.valence if e else None,
        "uncertain": int(e.uncertain) if e else None,
        "text_sentiment": s.text_sentiment,
        "sentiment": s.scored.sentiment,
        "sentiment_confidence": s.scored.sentiment_confidence,
        "wpm": s.wpm,
        "key_phrases": json.dumps(s.key_phrases) if s.key_phrases else None,
        "created_at": now,
    }


def transcript_row(
    transcript: Transcript, call_id: str, now: float, withheld: bool = False
) -> dict:
    """A row of `transcripts` (already redacted by the STT stage and the call's context); the
    store adds utterance_id. `withheld`: transcription was paused, the text is empty."""
    words = [{"w": w.text, "s": round(w.start, 2), "e": round(w.end, 2)} for w in transcript.words]
    return {
        "call_id": call_id,
        "text": transcript.text,
        "words": json.dumps(words),
        "engine": transcript.engine,
        "created_at": now,
        "withheld": int(withheld),
    }


def utterance_body(s: UtteranceScores, call: CallFacts) -> dict:
    """The `utterance` message: scores only, never text."""
    u = s.utterance
    return {
        "call_id": call.call_id,
        "position": call.position,
        "speaker": u.speaker,
        "index": u.index,
        "start": u.start,
        "end": u.end,
        "emotion": s.emotion.as_dict() if s.emotion else None,
        "sentiment": rounded(s.scored.sentiment),
        "sentiment_confidence": rounded(s.scored.sentiment_confidence),
        "text_sentiment": rounded(s.text_sentiment),
        "words_per_minute": s.wpm,
        "key_phrase_count": len(s.key_phrases),
    }


def utterance_result(s: UtteranceScores) -> dict:
    """The entry `appliance analyze --json` prints for an utterance (text included: local only)."""
    u = s.utterance
    return {
        "speaker": u.speaker,
        "start": u.start,
        "end": u.end,
        "text": s.transcript.text if s.transcript else None,
        "emotion": s.emotion.as_dict() if s.emotion else None,
        "sentiment": rounded(s.scored.sentiment),
    }


def alert_records(
    finding: Any, call: CallFacts, alert_id: str, at: float, threshold: float | None, now: float
) -> tuple[dict, dict, dict]:
    """Row of `alerts`, `alert` message body and `analyze` entry of a rule alert or a cross-call
    signal (both carry rule, severity, action, signal, value, reason, evidence)."""
    f = finding
    row = {
        "id": alert_id,
        "call_id": call.call_id,
        "customer_ref": call.customer_ref or None,
        "position": call.position,
        "rule": f.rule,
        "severity": f.severity,
        "action": f.action,
        "signal": f.signal,
        "value": f.value,
        "threshold": threshold,
        "at": at,
        "reason": f.reason,
        "evidence": json.dumps(f.evidence),
        "created_at": now,
        "acknowledged_at": None,
        "acknowledged_by": None,
    }
    body = {
        "alert_id": alert_id,
        "call_id": call.call_id,
        "position": call.position,
        "rule": f.rule,
        "severity": f.severity,
        "action": f.action,
        "signal": f.signal,
        "value": rounded(f.value),
        "threshold": rounded(threshold),
        "at": round(at, 2),
    }
    _customer(body, call)
    if call.segment:
        body["segment"] = call.segment
    entry = {
        "rule": f.rule,
        "severity": f.severity,
        "action": f.action,
        "signal": f.signal,
        "value": rounded(f.value),
        "at": round(at, 2),
        "reason": f.reason,
    }
    return row, body, entry


def call_records(
    call: CallFacts,
    state: str,
    summary: dict,
    trajectory: list[dict],
    alerts: int,
    ended_at: float | None,
    transcription: dict | None = None,
) -> tuple[dict, dict]:
    """Row of `calls` and the `call` message body, live or ended. `transcription` (paused,
    held: the redaction context's state) is shown on the panel, never published."""
    summary = {**summary, "alerts": alerts}
    row = {
        "id": call.call_id,
        "position": call.position,
        "customer_ref": call.customer_ref or None,
        "call_type": call.call_type,
        "segment": call.segment or None,
        "source": call.source,
        "state": state,
        "started_at": call.started_at,
        "ended_at": ended_at,
        "duration": summary["duration"],
        "metrics": json.dumps(
            {**summary, "trajectory": trajectory, "transcription": transcription or {}}
        ),
        "alerts": alerts,
    }
    if any(call.sip):
        row.update(zip(("sip_call_id", "caller", "callee"), call.sip, strict=True))
    body = {
        "call_id": call.call_id,
        "position": call.position,
        "state": state,
        "call_type": call.call_type,
        "started_at": round(call.started_at, 3),
        "ended_at": round(ended_at, 3) if ended_at is not None else None,
        **summary,
    }
    _customer(body, call)
    if call.segment:
        body["segment"] = call.segment
    return row, body


def _customer(body: dict, call: CallFacts) -> None:
    """The customer's published id and, when pseudonymised, the id of the key that made it."""
    if call.customer_id:
        body["customer"] = call.customer_id
        if call.customer_key:
            body["customer_key"] = call.customer_key


def relationship_records(state: dict, call: CallFacts, now: float) -> tuple[dict, dict]:
    """Row of `relationships` and the `relationship` message body after a call."""
    row = {
        "customer_ref": call.customer_ref,
        "segment": call.segment or None,
        "calls": state["calls"],
        "health": state["health"],
        "trend": state["trend"],
        "risk": state["risk"],
        "advocacy": state["advocacy"],
        "state": state["state"],
        "detail": json.dumps(state),
        "last_call_id": call.call_id,
        "updated_at": now,
    }
    body = {
        "calls": state["calls"],
        "last_call_id": call.call_id,
        "health": state["health"],
        "trend": state["trend"],
        "risk": state["risk"],
        "advocacy": state["advocacy"],
        "state": state["state"],
    }
    _customer(body, call)
    if call.segment:
        body["segment"] = call.segment
    return row, body
