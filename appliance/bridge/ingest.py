"""What the bridge does with one MQTT message, in one transaction of the central database.

1. The topic names the kind and the box; the payload must pass the same JSON Schemas the box
   checks before publishing (`publish.contract`) and carry the topic's box id. Anything else is
   refused, logged and counted (`rejected:<reason>`), and acknowledged: a malformed message
   would come back forever otherwise.
2. `msg_id` is the exactly-once gate: a message already stored changes nothing.
3. A `call` message updates the call (the highest `seq` wins). An ended call with a customer
   recomputes that customer's site-wide relationship from all their ended calls on every box,
   in time order (`scoring.relationship.replay_customer`, calls without scores skipped), under a
   row lock, so instances that receive one customer's calls at the same time queue up. A
   call with a segment and a score moves the segment's CUSUM. Entering declining or at-risk,
   first advocacy and a segment shift are signals: stored as site alerts and delivered.
4. An `alert` message is stored once (by `alert_id`) and delivered.

Deliveries are queued in the same transaction (`store.central.deliveries`), so an event is
delivered if and only if it was stored, whatever instance dies when.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable

from appliance.bridge.routing import Router
from appliance.bridge.webhook import encode
from appliance.publish import contract
from appliance.scoring import relationship
from appliance.scoring.relationship import Signal
from appliance.store.central import deliveries
from appliance.store.central import ingest as central
from appliance.store.central.db import CentralDB, Tx

log = logging.getLogger(__name__)

SIGNAL_NS = uuid.UUID("5f0c1f8e-8a55-4a39-9d55-2b6d0d3f0c19")
"""Namespace of the bridge's own event ids: uuid5(SIGNAL_NS, "<call msg_id>/<rule>")."""
HISTORY_CALLS = 200
ENVELOPE = ("schema", "seq")


class Rejected(ValueError):
    """A message the bridge refuses; `reason` is the counter it is counted under."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse(topic: str, raw: bytes) -> tuple[str, dict, str]:
    """(kind, payload, text) of a message on `<prefix>/v1/<box>/<kind>`; Rejected otherwise."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[-3] != f"v{contract.SCHEMA_VERSION}":
        raise Rejected("topic", f"not a v{contract.SCHEMA_VERSION} topic: {topic[:200]}")
    kind, box = parts[-1], parts[-2]
    if kind not in contract.OUTBOX_KINDS:
        raise Rejected("topic", f"not a score topic: {topic[:200]}")
    try:
        text = bytes(raw).decode("utf-8")
        payload = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Rejected("json", f"{topic[:200]}: {str(exc)[:200]}") from exc
    try:
        contract.check_payload(kind, payload)
    except contract.ContractError as exc:
        raise Rejected("contract", f"{topic[:200]}: {exc}") from exc
    if payload["box_id"] != box:
        raise Rejected("box_id", f"{topic[:200]}: payload of box {payload['box_id']}")
    return kind, payload, text


def alert_event(p: dict, segment: str | None) -> dict:
    """The webhook body of a box's alert: its payload, flattened, with the segment."""
    body = {"event": "alert", "id": p["msg_id"], "source": "box"}
    body.update({k: v for k, v in p.items() if k not in ENVELOPE and k != "msg_id"})
    if segment:
        body["segment"] = segment
    return body


def signal_event(key: str, sig: Signal, call: dict, customer: dict | None) -> dict:
    """The webhook body of a site-wide relationship or segment signal."""
    body = {
        "event": "relationship_signal",
        "id": key,
        "source": "site",
        "ts": round(time.time(), 3),
        "rule": sig.rule,
        "severity": sig.severity,
        "action": sig.action,
        "signal": sig.signal,
        "value": sig.value,
        "reason": sig.reason,
        "call_id": call["call_id"],
        "box_id": call["box_id"],
    }
    if sig.signal != "segment_shift" and call.get("customer"):
        body["customer"] = call["customer"]
    segment = sig.evidence.get("segment") or call.get("segment")
    if segment:
        body["segment"] = segment
    if customer is not None:
        body["relationship"] = customer
    return body


class Ingestor:
    """Validates and stores messages for one bridge instance."""

    def __init__(
        self,
        db: CentralDB,
        router: Router,
        key_id: str,
        instance: str,
        on_queued: Callable[[], None] = lambda: None,
    ):
        self.db = db
        self.router = router
        self.key_id = key_id
        """Id of the site key; calls pseudonymised under another key are counted, not merged."""
        self.instance = instance
        self.on_queued = on_queued
        self.stored = self.duplicates = self.rejected = 0
        self._warned_boxes: set[str] = set()

    def handle(self, topic: str, raw: bytes) -> str:
        """`stored`, `duplicate` or `rejected`. Database errors propagate (nothing is acked)."""
        try:
            kind, payload, text = parse(topic, raw)
        except Rejected as exc:
            self.rejected += 1
            log.warning("rejected message: %s", exc)
            reason, detail = exc.reason, exc.detail
            self.db.transact(lambda tx: central.count(tx, f"rejected:{reason}", detail))
            return "rejected"
        queued: list[bool] = []
        stored = self.db.transact(lambda tx: self._store(tx, kind, payload, text, queued))
        if not stored:
            self.duplicates += 1
            return "duplicate"
        self.stored += 1
        if queued:
            self.on_queued()
        return "stored"

    # -- inside the transaction (retried as a whole: `queued` is reset each time) ----------

    def _store(self, tx: Tx, kind: str, p: dict, text: str, queued: list[bool]) -> bool:
        queued.clear()
        if not central.insert_message(tx, kind, p, text, self.instance):
            return False
        if kind == "call":
            self._call(tx, p, queued)
        elif kind == "alert":
            segment = p.get("segment") or (
                central.call_segment(tx, p["call_id"]) if p.get("call_id") else None
            )
            row = {**p, "segment": segment, "reason": None}
            if central.insert_alert(tx, "box", row):
                self._deliver(tx, p["msg_id"], alert_event(p, segment), queued)
        return True

    def _call(self, tx: Tx, p: dict, queued: list[bool]) -> None:
        central.upsert_call(tx, p)
        if p["state"] != "ended":
            return
        if p.get("customer"):
            key = p.get("customer_key")
            if key and key != self.key_id:
                central.count(
                    tx, "key_mismatch", f"box {p['box_id']} uses key {key}, not {self.key_id}"
                )
                if p["box_id"] not in self._warned_boxes:
                    self._warned_boxes.add(p["box_id"])
                    log.error(
                        "box %s pseudonymises customers with key %s, this bridge has %s:"
                        " its customers are stored but not merged (provision the site key)",
                        p["box_id"],
                        key,
                        self.key_id,
                    )
            else:
                self._customer(tx, p, queued)
        if p.get("segment") and relationship.has_score(p):
            prev = central.lock_segment(tx, p["segment"])
            state, signals = relationship.update_segment(
                prev, p["segment"], p["call_id"], p["sentiment_mean"]
            )
            central.save_segment(tx, p["segment"], state)
            for sig in signals:
                self._signal(tx, sig, p, None, queued)

    def _customer(self, tx: Tx, p: dict, queued: list[bool]) -> None:
        customer = p["customer"]
        row = central.lock_customer(tx, customer)
        calls, boxes, scored = central.customer_calls(tx, customer, self.key_id, HISTORY_CALLS)
        state = relationship.replay_customer(
            [(c["call_id"], c, c["ended_at"] or 0.0) for c in scored]
        )
        fields: dict = {
            "calls": calls,
            "boxes": boxes,
            "segment": p.get("segment") or row["segment"],
            "last_call_id": p["call_id"],
        }
        if state is not None:
            fields.update(
                {k: state[k] for k in ("health", "trend", "risk", "advocacy", "state")},
                detail=state,
            )
        central.save_customer(tx, customer, fields)
        if state is None:
            return
        summary = {
            k: fields[k] for k in ("calls", "boxes", "health", "trend", "risk", "advocacy", "state")
        }
        for sig in relationship.customer_signals(row["detail"], state):
            self._signal(tx, sig, p, summary, queued)

    def _signal(
        self, tx: Tx, sig: Signal, call: dict, customer: dict | None, queued: list[bool]
    ) -> None:
        key = str(uuid.uuid5(SIGNAL_NS, f"{call['msg_id']}/{sig.rule}"))
        body = signal_event(key, sig, call, customer)
        row = {
            "alert_id": key,
            "msg_id": key,
            "box_id": call["box_id"],
            "call_id": call["call_id"],
            "customer": body.get("customer"),
            "segment": body.get("segment"),
            "rule": sig.rule,
            "severity": sig.severity,
            "action": sig.action,
            "signal": sig.signal,
            "value": sig.value,
            "at": None,
            "ts": body["ts"],
            "reason": sig.reason,
        }
        if central.insert_alert(tx, "site", row):
            self._deliver(tx, key, body, queued)

    def _deliver(self, tx: Tx, key: str, body: dict, queued: list[bool]) -> None:
        target = self.router.route(body)
        if target is None:
            return
        text = encode(body)
        if deliveries.enqueue(tx, key, body["event"], target.route, target.url, text):
            queued.append(True)
