"""The outbox: every message that leaves the box, queued in the same transaction as its scores.

Rows `(seq, msg_id, kind, payload, created_at, sent_at, attempts)`. The writer queues rows
(`enqueue`, inside its transaction); the publisher reads and marks them through its own
connection (`OutboxCursor`); retention prunes sent rows. Rows are never deleted on send: a row
gets a `sent_at` when the broker acknowledged it (PUBACK).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from appliance.publish import contract
from appliance.store import settings
from appliance.store.connection import connect, immediate, migrate

log = logging.getLogger(__name__)

OUTBOX_MAX_ROWS = 200_000


def last_seq(db: sqlite_utils.Database) -> int:
    """The highest outbox seq ever issued (survives retention pruning every row)."""
    row = db.execute(
        "SELECT MAX(COALESCE((SELECT MAX(seq) FROM outbox), 0),"
        " COALESCE((SELECT CAST(value AS INTEGER) FROM settings WHERE key = ?), 0))",
        [settings.LAST_SEQ],
    ).fetchone()
    return int(row[0] or 0)


def remember_last_seq(db: sqlite_utils.Database) -> None:
    """Keep the highest seq in settings before rows are pruned (inside the caller's transaction)."""
    settings.put(db, settings.LAST_SEQ, str(last_seq(db)))


def acked_watermark(db: sqlite_utils.Database) -> int:
    """Highest seq such that every outbox row up to it has a sent time."""
    first_pending = db.execute("SELECT MIN(seq) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
    if first_pending is not None:
        return int(first_pending) - 1
    return last_seq(db)


def pending_count(db: sqlite_utils.Database) -> int:
    return int(db.execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0] or 0)


def counts(db: sqlite_utils.Database) -> dict[str, int]:
    """rows / pending / sent."""
    row = db.execute(
        "SELECT COUNT(*), SUM(sent_at IS NULL), SUM(sent_at IS NOT NULL) FROM outbox"
    ).fetchone()
    return {"rows": row[0] or 0, "pending": row[1] or 0, "sent": row[2] or 0}


def pending_by_kind(db: sqlite_utils.Database) -> dict[str, int]:
    return dict(
        db.execute(
            "SELECT kind, COUNT(*) FROM outbox WHERE sent_at IS NULL GROUP BY kind"
        ).fetchall()
    )


@dataclass
class OutboxCap:
    """Outbox size cap, checked inside the writer's transaction every few hundred rows.

    Above the cap the alarm is raised and the oldest pending *superseded* rows are dropped
    (live call updates and health snapshots: a later `call`/`health` message replaces them).
    Utterance scores, ended calls, relationships and alerts are never dropped: if they alone
    exceed the cap the alarm stays raised and they keep being queued.
    """

    max_rows: int = OUTBOX_MAX_ROWS
    alarm: bool = False
    """Set while more than `max_rows` rows wait for the broker (health alarm `outbox_full`)."""
    dropped: int = 0
    """Superseded low-priority rows dropped by the cap since start."""
    _since_check: int | None = None

    def check(self, db: sqlite_utils.Database, added: int) -> None:
        cap = self.max_rows
        every = max(1, min(256, cap // 20))
        if self._since_check is not None:
            self._since_check += added
            if self._since_check < every:
                return
        self._since_check = 0
        pending = pending_count(db)
        if pending > cap:
            excess = pending - int(cap * 0.9)
            cur = db.conn.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE sent_at IS NULL AND"
                " (kind = 'health' OR (kind = 'call' AND json_extract(payload, '$.state') = 'live'))"
                " ORDER BY seq LIMIT ?)",
                [excess],
            )
            dropped = cur.rowcount or 0
            self.dropped += dropped
            pending -= dropped
            db.conn.execute(
                "INSERT INTO events (at, kind, detail) VALUES (?, 'outbox_full', ?)",
                [time.time(), json.dumps({"pending": pending, "cap": cap, "dropped": dropped})],
            )
        alarm = pending > cap
        if alarm != self.alarm:
            (log.error if alarm else log.warning)(
                "outbox %s: %d rows pending (cap %d, %d superseded rows dropped so far)",
                "over its cap" if alarm else "back under its cap",
                pending,
                cap,
                self.dropped,
            )
        elif pending > cap * 0.9 and self.dropped:
            log.warning("outbox near its cap: %d rows pending (cap %d)", pending, cap)
        self.alarm = alarm


_SEQ_MARK = 999_999_999_999
"""Stands in for the seq while a payload is checked and serialised, before it has one."""


@dataclass(frozen=True)
class Prepared:
    """A message checked against the contract and serialised, waiting for its seq."""

    kind: str
    msg_id: str
    payload: dict
    head: str
    """The JSON text before the seq value."""
    tail: str
    """The JSON text after it."""

    def text(self, seq: int) -> str:
        return f"{self.head}{seq}{self.tail}"


def prepare(messages: Sequence[tuple[str, dict]]) -> list[Prepared]:
    """Check and serialise messages before the write transaction (the slow part: JSON Schema),
    so the transaction itself only numbers and inserts them. ContractError if one may not leave."""
    out = []
    for kind, payload in messages:
        marked = {**payload, "seq": _SEQ_MARK}
        contract.check_payload(kind, marked)
        text = json.dumps(marked, separators=(",", ":"))
        token = f'"seq":{_SEQ_MARK}'
        if text.count(token) != 1:  # a nested "seq" holding the very placeholder
            raise contract.ContractError(f"{kind}: a value equals the seq placeholder")
        head, _, tail = text.partition(token)
        out.append(Prepared(kind, payload["msg_id"], payload, head + '"seq":', tail))
    return out


def enqueue(db: sqlite_utils.Database, prepared: Sequence[Prepared], cap: OutboxCap) -> list[dict]:
    """Insert prepared rows inside the caller's transaction; returns the stamped payloads.

    `seq` continues from the highest seq ever issued. Every payload was checked against the
    contract by `prepare`, so a row that could never be published is never queued: the
    caller's write (scores included) fails loudly instead.
    """
    if not prepared:
        return []
    seq = last_seq(db)
    now = time.time()
    params: list[Any] = []
    out: list[dict] = []
    for i, p in enumerate(prepared, 1):
        params += [seq + i, p.msg_id, p.kind, p.text(seq + i), now]
        out.append({**p.payload, "seq": seq + i})
    db.conn.execute(
        "INSERT INTO outbox (seq, msg_id, kind, payload, created_at, sent_at, attempts) VALUES "
        + ",".join(["(?, ?, ?, ?, ?, NULL, 0)"] * len(prepared)),
        params,
    )
    settings.put(db, settings.LAST_SEQ, str(seq + len(prepared)), now)
    cap.check(db, len(prepared))
    return out


def outbox_status(path: str | Path, max_rows: int | None = None) -> dict[str, Any]:
    """Counts for `appliance outbox status`."""
    db = connect(path)
    try:
        migrate(db)
        row = db.execute(
            "SELECT COUNT(*), SUM(sent_at IS NULL), SUM(sent_at IS NOT NULL),"
            " MIN(CASE WHEN sent_at IS NULL THEN created_at END), MAX(sent_at),"
            " SUM(CASE WHEN sent_at IS NULL THEN attempts > 0 ELSE 0 END) FROM outbox"
        ).fetchone()
        oldest = row[3]
        pending = row[1] or 0
        cap = max_rows or OUTBOX_MAX_ROWS
        return {
            "db": str(path),
            "rows": row[0] or 0,
            "pending": pending,
            "sent": row[2] or 0,
            "pending_by_kind": pending_by_kind(db),
            "pending_retried": row[5] or 0,
            "oldest_pending_age_s": round(time.time() - oldest, 1) if oldest else None,
            "last_sent_at": round(row[4], 3) if row[4] else None,
            "last_seq": last_seq(db),
            "acked_seq": acked_watermark(db),
            "max_rows": cap,
            "alarm": pending > cap,
        }
    finally:
        db.conn.close()


class OutboxCursor:
    """The publisher's own connection to the outbox: read pending rows, mark them sent."""

    def __init__(self, path: str | Path):
        self.db = connect(path)

    def close(self) -> None:
        self.db.conn.close()

    def marks(self) -> tuple[int, int]:
        """(acked watermark, last seq)."""
        return acked_watermark(self.db), last_seq(self.db)

    def pending(self, limit: int) -> list[tuple[int, str, str]]:
        """(seq, kind, payload JSON) of the oldest unsent rows."""
        return self.db.execute(
            "SELECT seq, kind, payload FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT ?",
            [limit],
        ).fetchall()

    def pending_count(self) -> int:
        return pending_count(self.db)

    # One statement per transaction: under a saturated CPU every statement costs the thread a
    # wait for the GIL while it holds the write lock (executemany pays it once per row).

    def mark_sent(self, seqs: Sequence[int], at: float) -> None:
        with immediate(self.db):
            self.db.conn.execute(
                "UPDATE outbox SET sent_at = ? WHERE sent_at IS NULL"
                " AND seq IN (SELECT value FROM json_each(?))",
                [at, json.dumps([int(s) for s in seqs])],
            )

    def count_attempt(self, seqs: Sequence[int]) -> None:
        with immediate(self.db):
            self.db.conn.execute(
                "UPDATE outbox SET attempts = attempts + 1"
                " WHERE seq IN (SELECT value FROM json_each(?))",
                [json.dumps([int(s) for s in seqs])],
            )

    def unmark_after(self, seq: int, checkpoint: int) -> int:
        """Rows acknowledged after `seq` become pending again; returns how many (logged)."""
        with immediate(self.db):
            cur = self.db.conn.execute(
                "UPDATE outbox SET sent_at = NULL WHERE sent_at IS NOT NULL AND seq > ?", [seq]
            )
            n = cur.rowcount or 0
            if n:
                self.db.conn.execute(
                    "INSERT INTO events (at, kind, detail) VALUES (?, 'outbox_resend', ?)",
                    [time.time(), json.dumps({"checkpoint": checkpoint, "rows": n})],
                )
        return n

    def saved_checkpoint(self) -> int | None:
        raw = settings.get(self.db, settings.MQTT_CHECKPOINT)
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None

    def save_checkpoint(self, cp: int) -> None:
        settings.put(self.db, settings.MQTT_CHECKPOINT, str(cp))
