"""The single writer's work: an utterance's stages -> scores, alerts, rows, one transaction.

`CallWriter` runs on the pipeline's writer thread only, so the per-call scorer and rule state
need no lock. It composes the scoring stage (text sentiment, fusion, call metrics, rules,
relationship) with the pure row builders of `records` and hands the result to the store in one
transaction with its outbox messages.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from appliance.config import AppConfig
from appliance.emotion.policy import abstain_on_transcript
from appliance.pipeline import records
from appliance.pipeline.call import CallSession
from appliance.pipeline.records import CallFacts, UtteranceScores
from appliance.publish import contract
from appliance.scoring import relationship, sentiment
from appliance.scoring.call import CallScorer, ScoredUtterance, fuse
from appliance.store.recovery import ABORTED
from appliance.store.settings import segment_key
from appliance.store.writer import Store
from appliance.types import EmotionResult, Transcript, Utterance

log = logging.getLogger(__name__)

#: Customer utterances whose indices the evidence of an alert lists.
EVIDENCE_UTTERANCES = 6
#: Signals a partial result can carry (rules on the others wait for the final utterance).
PARTIAL_SIGNALS = frozenset({"key_phrase"})


class CallWriter:
    """Scores and stores what the stages produced, per call, in commit order."""

    def __init__(
        self,
        cfg: AppConfig,
        store: Store,
        customer_id: Callable[[str], str],
        key_phrases: Sequence[str] | None = None,
    ):
        self.cfg = cfg
        self.store = store
        self.customer_id = customer_id
        """How a customer reference leaves the box (`appliance.publish.pseudonym`)."""
        self.key_phrases = key_phrases
        """Phrases spotted in customer text; None = the call language's defaults."""

    def _phrases(self, call: CallSession) -> Sequence[str]:
        return self.key_phrases or sentiment.phrases_for(call.language)

    def facts(self, call: CallSession) -> CallFacts:
        m = call.meta
        return CallFacts(
            call_id=call.id,
            position=m.position,
            customer_ref=m.customer_ref,
            customer_id=self.customer_id(m.customer_ref) if m.customer_ref else "",
            customer_key=getattr(self.customer_id, "key_id", "") if m.customer_ref else "",
            call_type=m.call_type,
            segment=m.segment,
            source=call.source,
            started_at=call.started_at,
            sip=(m.sip_call_id, m.caller, m.callee),
        )

    def _message(self, kind: str, body: dict, now: float | None = None) -> tuple[str, dict]:
        return kind, contract.new_message(kind, self.cfg.box.id, body, now)

    # -- an utterance ------------------------------------------------------------------------

    def score(
        self,
        call: CallSession,
        utt: Utterance,
        emotion: EmotionResult | None,
        transcript: Transcript | None,
    ) -> UtteranceScores:
        """Text signals and fusion for one utterance; adds it to the call's scorer."""
        text = transcript.text if transcript else None
        n_words = len(text.split()) if text else 0
        is_customer = utt.speaker == "customer"
        # a backchannel ("mm-hmm", "okay", "thank you") carries no emotion the box can stand behind
        emotion = abstain_on_transcript(emotion, text)
        text_sent = (
            sentiment.text_sentiment(text, call.language) if (text and is_customer) else None
        )
        phrases = sentiment.key_phrases(text, self._phrases(call)) if (text and is_customer) else []
        fused = fuse(emotion, text_sent, n_words) if is_customer else None
        wpm = round(60.0 * n_words / utt.duration, 1) if n_words and utt.duration > 0 else None
        scored = ScoredUtterance(
            index=utt.index,
            speaker=utt.speaker,
            start=utt.start,
            end=utt.end,
            emotion=emotion,
            sentiment=fused.value if fused else None,
            sentiment_confidence=fused.confidence if fused else 0.0,
            n_words=n_words,
            key_phrases=phrases,
            text_sentiment=text_sent,
        )
        call.scorer.add(scored)
        return UtteranceScores(utt, emotion, transcript, text_sent, scored, phrases, wpm)

    def write_utterance(
        self,
        call: CallSession,
        utt: Utterance,
        emotion: EmotionResult | None,
        transcript: Transcript | None,
        withheld: bool = False,
    ) -> None:
        """Score one utterance, evaluate the rules and commit it with its messages.

        `transcript` is the final one the call's redaction context released; `withheld` says
        transcription was paused (its text is empty, its scores are not)."""
        s = self.score(call, utt, emotion, transcript)
        alerts: list[Any] = []
        if utt.speaker == "customer":
            evidence = {
                "utterances": [u.index for u in call.scorer.customer()[-EVIDENCE_UTTERANCES:]],
                "trajectory": call.scorer.trajectory()[-EVIDENCE_UTTERANCES:],
            }
            alerts = call.rules.evaluate(call.scorer.signals(), at=utt.end, evidence=evidence)
        now = time.time()
        facts = self.facts(call)
        messages = [self._message("utterance", records.utterance_body(s, facts), now)]
        alert_rows = []
        for a in alerts:
            row, msg = self._alert(call, facts, a, at=a.at, threshold=a.threshold, now=now)
            alert_rows.append(row)
            messages.append(msg)
        call_row, call_msg = self._call(call, facts, "live", ended_at=None)
        messages.append(call_msg)
        keep_text = transcript is not None and self.cfg.policy.store_transcripts
        self.store.write_utterance(
            records.utterance_row(s, call.id, now),
            records.transcript_row(transcript, call.id, now, withheld) if keep_text else None,
            messages,
            upserts={"calls": [call_row], "alerts": alert_rows},
        )
        call.results.append(records.utterance_result(s))

    def write_partial(self, call: CallSession, phrases: Sequence[str], at: float) -> None:
        """Key phrases heard in a partial result at call time `at`: the key-phrase rules are
        evaluated now, before the utterance ends; an alert goes the usual way (one transaction,
        the outbox). Nothing of the partial's text is stored. Dropped while the redaction
        context holds digits, expects a sensitive answer or is paused: the final text decides."""
        st = call.redaction.state()
        if not phrases or st.paused or st.held or st.armed:
            return
        signals = dict(call.scorer.signals())
        signals["key_phrase"] = float(signals.get("key_phrase") or 0.0) + len(phrases)
        # the utterance being spoken counts: it is the one the phrase was heard in
        signals["customer_utterances"] = float(signals.get("customer_utterances") or 0) + 1
        evidence = {
            "utterances": [u.index for u in call.scorer.customer()[-EVIDENCE_UTTERANCES:]],
            "partial": True,
        }
        alerts = call.rules.evaluate(signals, at=at, evidence=evidence, only=PARTIAL_SIGNALS)
        if not alerts:
            return
        now = time.time()
        facts = self.facts(call)
        rows, messages = [], []
        for a in alerts:
            row, msg = self._alert(call, facts, a, at=a.at, threshold=a.threshold, now=now)
            rows.append(row)
            messages.append(msg)
        call_row, call_msg = self._call(call, facts, "live", ended_at=None)
        self.store.write(
            upserts={"calls": [call_row], "alerts": rows}, messages=[*messages, call_msg]
        )

    # -- calls and alerts -------------------------------------------------------------------

    def _alert(
        self,
        call: CallSession,
        facts: CallFacts,
        finding: Any,
        at: float,
        threshold: float | None = None,
        now: float | None = None,
    ) -> tuple[dict, tuple[str, dict]]:
        now = time.time() if now is None else now
        row, body, entry = records.alert_records(
            finding, facts, str(uuid.uuid4()), at, threshold, now
        )
        call.alerts.append(entry)
        return row, self._message("alert", body)

    def _call(
        self, call: CallSession, facts: CallFacts, state: str, ended_at: float | None
    ) -> tuple[dict, tuple[str, dict]]:
        row, body = records.call_records(
            facts,
            state,
            call.scorer.summary(),
            call.scorer.trajectory(),
            len(call.alerts),
            ended_at,
            transcription=call.redaction.state().as_dict(),
        )
        return row, self._message("call", body)

    def write_call(self, call: CallSession) -> None:
        """The call opened or its metadata changed: a live `call` row and message."""
        row, msg = self._call(call, self.facts(call), "live", ended_at=None)
        self.store.write(upserts={"calls": [row]}, messages=[msg])

    def end_call(self, call: CallSession) -> None:
        """The call ended: its summary, and the customer's and segment's relationship."""
        facts = self.facts(call)
        row, msg = self._call(call, facts, "ended", ended_at=time.time())
        messages = [msg]
        upserts: dict[str, list[dict]] = {"calls": [row], "alerts": [], "relationships": []}
        settings: dict[str, Any] = {}
        summary = call.scorer.summary()
        call.summary = {**summary, "alerts": len(call.alerts)}
        ref = call.meta.customer_ref
        # a call without customer scores says nothing about the relationship: skipped, not a 0
        if ref and relationship.has_score(summary):
            now = time.time()
            state, signals = relationship.update_customer(
                self.store.customer_state(ref), call.id, summary, now
            )
            rel_row, rel_body = records.relationship_records(state, facts, now)
            upserts["relationships"].append(rel_row)
            messages.append(self._message("relationship", rel_body))
            if call.meta.segment:
                seg_state, seg_signals = relationship.update_segment(
                    self.store.segment_state(call.meta.segment),
                    call.meta.segment,
                    call.id,
                    summary.get("sentiment_mean"),
                )
                settings[segment_key(call.meta.segment)] = seg_state
                signals = [*signals, *seg_signals]
            for sig in signals:
                arow, amsg = self._alert(call, facts, sig, at=summary["duration"])
                upserts["alerts"].append(arow)
                messages.append(amsg)
        self.store.write(upserts=upserts, messages=messages, settings_json=settings)

    def close_orphans(self, calls: Sequence[dict]) -> int:
        """Calls a dead process left `live` (`Store.orphans`): closed as `aborted` with the
        summary their last committed utterance left, and published. The relationship is not
        updated: an incomplete call is no evidence about the customer. Returns how many."""
        for r in calls:
            metrics = dict(r["metrics"])
            trajectory = metrics.pop("trajectory", [])
            transcription = metrics.pop("transcription", None)  # the row's, never published
            alerts = int(r["alerts"] or metrics.pop("alerts", 0) or 0)
            metrics.pop("alerts", None)
            summary = metrics or CallScorer(call_type=r["call_type"] or "support").summary()
            started = float(r["started_at"] or time.time())
            ended_at = started + float(summary.get("duration") or 0.0)
            ref = r["customer_ref"] or ""
            facts = CallFacts(
                call_id=r["id"],
                position=r["position"] or "",
                customer_ref=ref,
                customer_id=self.customer_id(ref) if ref else "",
                call_type=r["call_type"] or "support",
                segment=r["segment"] or "",
                source=r["source"] or "",
                started_at=started,
            )
            try:
                row, body = records.call_records(
                    facts, ABORTED, summary, trajectory, alerts, ended_at, transcription
                )
                self.store.write(upserts={"calls": [row]}, messages=[self._message("call", body)])
            except (contract.ContractError, KeyError, TypeError, ValueError) as exc:
                log.error("call %s left open by a crash: closed unpublished (%s)", r["id"], exc)
                self.store.abort_call(r["id"], ended_at)
            else:
                log.warning("call %s left open by a crash: closed as aborted", r["id"])
        return len(calls)
