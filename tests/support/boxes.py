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
        self._calls_of: dict[str, int] = {}
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
        """Whole calls (utterances, live updates, an alert every third call, the ended summary);
        customers at odd positions in `refs` decline call after call (site signals)."""
        out: list[dict] = []
        for _ in range(calls_each):
            for i, ref in enumerate(refs):
                k = self._calls_of.get(ref, 0)
                self._calls_of[ref] = k + 1
                call_id = str(uuid.uuid4())
                self.now += 3600.0
                sentiment = max(-1.0, 0.3 - 0.15 * k) if i % 2 else 0.25
                for u in range(utterances):
                    out.append(self.utterance(call_id, u, sentiment))
                    out.append(self.call(call_id, ref, sentiment, state="live"))
                if (k + i) % 3 == 2:
                    out.append(self.alert(call_id, ref))
                out.append(self.call(call_id, ref, sentiment, segment="retail"))
        return out


class SimulatedBox:
    """A box without audio: messages queued in its real outbox (SQLite, `Store.write`) and
    delivered by its real `Publisher` (QoS 1, PUBACK, checkpoint)."""

    def __init__(self, tmp: Path, box_id: str, url: str, key: bytes):
        from appliance.publish.mqtt import Publisher
        from appliance.store.writer import Store

        self.factory = MessageFactory(box_id, key)
        self.db_path = tmp / f"{box_id}.db"
        cfg = config_from_dict(
            {"box": {"id": box_id}, "mqtt": {"url": url, "max_inflight": 200, "batch_size": 500}}
        )
        self.store = Store(self.db_path, box_id=box_id)
        self.publisher = Publisher(self.db_path, cfg.mqtt, box_id=box_id)
        self.msg_ids: list[str] = []

    def queue(self, messages: list[dict], batch: int = 500) -> None:
        """Into the outbox, `batch` messages per transaction (the store stamps seq)."""
        for i in range(0, len(messages), batch):
            chunk = messages[i : i + batch]
            stamped = self.store.write(messages=[(m["schema"].split("/")[0], m) for m in chunk])
            self.msg_ids += [m["msg_id"] for m in stamped]
        self.publisher.wake()

    def start(self) -> SimulatedBox:
        self.publisher.start()
        return self

    def close(self, flush_timeout: float = 30.0) -> bool:
        ok = self.publisher.flush(flush_timeout)
        self.publisher.stop()
        self.store.close()
        return ok
