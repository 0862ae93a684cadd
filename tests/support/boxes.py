"""Simulated boxes for the bridge tests: contract-valid messages (`publish.contract`) for calls,
utterances and alerts of given customers, and a box that queues them in a real outbox and
publishes them through the real `Publisher` (the soak's four boxes)."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

from appliance.config import config_from_dict
from appliance.publish import contract
from appliance.publish.pseudonym import key_id, pseudonymise


class MessageFactory:
    """Messages of one box, numbered in order (seq), customers pseudonymised with `key`."""

    def __init__(self, box_id: str, key: bytes):
        self.box_id = box_id
        self.key = key
        self.key_id = key_id(key)
        self._seq = itertools.count(1)
        self.now = 1_790_000_000.0

    def customer(self, ref: str) -> str:
        return pseudonymise(ref, self.key)

    def _msg(self, kind: str, body: dict) -> dict:
        msg = contract.new_message(kind, self.box_id, body, ts=self.now)
        msg["seq"] = next(self._seq)
        contract.check_payload(kind, msg)
        return msg

    def call(
        self,
        call_id: str,
        ref: str | None,
        sentiment: float | None,
        state: str = "ended",
        segment: str | None = None,
        enthusiasm: float | None = 0.4,
        ended_at: float | None = None,
    ) -> dict:
        body = {
            "call_id": call_id,
            "position": "pos-1",
            "state": state,
            "call_type": "support",
            "started_at": (ended_at or self.now) - 60.0,
            "ended_at": (ended_at or self.now) if state == "ended" else None,
            "duration": 60.0,
            "sentiment_mean": sentiment,
            "enthusiasm": enthusiasm if sentiment is not None else None,
            "alerts": 0,
        }
        if ref:
            body["customer"] = self.customer(ref)
            body["customer_key"] = self.key_id
        if segment:
            body["segment"] = segment
        return self._msg("call", body)

    def alert(self, call_id: str, ref: str | None, rule: str = "negative_sentiment") -> dict:
        body = {
            "alert_id": str(uuid.uuid4()),
            "call_id": call_id,
            "position": "pos-1",
            "rule": rule,
            "severity": "warning",
            "action": "intervention_recommended",
            "signal": "sentiment",
            "value": -0.5,
            "threshold": -0.3,
            "at": 12.5,
        }
        if ref:
            body["customer"] = self.customer(ref)
            body["customer_key"] = self.key_id
        return self._msg("alert", body)

    def utterance(self, call_id: str, index: int, sentiment: float) -> dict:
        body = {
            "call_id": call_id,
            "position": "pos-1",
            "speaker": "customer",
            "index": index,
            "start": 2.0 * index,
            "end": 2.0 * index + 1.5,
            "emotion": None,
            "sentiment": sentiment,
        }
        return self._msg("utterance", body)

    def history(self, refs: list[str], calls_each: int, utterances: int = 3) -> list[dict]:
        """Whole calls (utterances, live updates, an alert now and then, the ended summary)."""
        out: list[dict] = []
        for n, ref in itertools.product(range(calls_each), refs):
            call_id = str(uuid.uuid4())
            self.now += 3600.0
            sentiment = 0.3 - 0.08 * n if hash(ref) % 2 else 0.2
            for i in range(utterances):
                out.append(self.utterance(call_id, i, sentiment))
                out.append(self.call(call_id, ref, sentiment, state="live"))
            if n % 3 == 2:
                out.append(self.alert(call_id, ref))
            out.append(self.call(call_id, ref, sentiment, segment="retail"))
        return out


def box_config(tmp: Path, box_id: str, url: str, key_file: Path):
    """The config of a simulated box publishing to `url` with the site key."""
    return config_from_dict(
        {
            "box": {"id": box_id},
            "paths": {"db": str(tmp / f"{box_id}.db")},
            "mqtt": {"url": url, "customer_key_file": str(key_file), "max_inflight": 100},
        },
        base_dir=tmp,
    )
