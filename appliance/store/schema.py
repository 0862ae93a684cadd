"""The schema: sqlite-utils `Migrations("appliance")`, applied in order and recorded.

Table and migration names are part of the box's contract with its own past: a migration is
never renamed or edited once shipped; a change is a new migration.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("appliance")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["calls"].create(
        {
            "id": str,
            "position": str,
            "customer_ref": str,
            "call_type": str,
            "segment": str,
            "source": str,
            "state": str,
            "started_at": float,
            "ended_at": float,
            "duration": float,
            "metrics": str,  # JSON of the call summary (see scoring.CallScorer.summary)
            "alerts": int,
        },
        pk="id",
    )
    db["calls"].create_index(["started_at"])
    db["calls"].create_index(["customer_ref"])
    db["calls"].create_index(["position", "state"])
    db["utterances"].create(
        {
            "id": int,
            "call_id": str,
            "idx": int,
            "speaker": str,
            "start": float,
            "end": float,
            "emotion_label": str,
            "confidence": float,
            "intensity": float,
            "arousal": float,
            "valence": float,
            "uncertain": int,
            "text_sentiment": float,
            "sentiment": float,
            "sentiment_confidence": float,
            "wpm": float,
            "key_phrases": str,
            "created_at": float,
        },
        pk="id",
        foreign_keys=[("call_id", "calls", "id")],
    )
    db["utterances"].create_index(["call_id", "idx"], unique=True)
    db["utterances"].create_index(["created_at"])
    # Redacted text only: the STT stage redacts before anything reaches this table.
    db["transcripts"].create(
        {
            "utterance_id": int,
            "call_id": str,
            "text": str,
            "words": str,
            "engine": str,
            "created_at": float,
        },
        pk="utterance_id",
        foreign_keys=[("utterance_id", "utterances", "id")],
    )
    db["transcripts"].create_index(["created_at"])
    db["alerts"].create(
        {
            "id": str,
            "call_id": str,
            "customer_ref": str,
            "position": str,
            "rule": str,
            "severity": str,
            "action": str,
            "signal": str,
            "value": float,
            "threshold": float,
            "at": float,
            "reason": str,
            "evidence": str,
            "created_at": float,
            "acknowledged_at": float,
            "acknowledged_by": str,
        },
        pk="id",
    )
    db["alerts"].create_index(["created_at"])
    db["alerts"].create_index(["call_id"])
    db["relationships"].create(
        {
            "customer_ref": str,
            "segment": str,
            "calls": int,
            "health": float,
            "trend": float,
            "risk": float,
            "advocacy": float,
            "state": str,
            "detail": str,  # JSON: EWMA/CUSUM state and the per-call history used as evidence
            "last_call_id": str,
            "updated_at": float,
        },
        pk="customer_ref",
    )
    db["outbox"].create(
        {
            "seq": int,
            "msg_id": str,
            "kind": str,
            "payload": str,
            "created_at": float,
            "sent_at": float,
            "attempts": int,
        },
        pk="seq",
    )
    db["outbox"].create_index(["msg_id"], unique=True)
    db["outbox"].create_index(["sent_at", "seq"])
    db["settings"].create({"key": str, "value": str, "updated_at": float}, pk="key")
    db["events"].create({"id": int, "at": float, "kind": str, "detail": str}, pk="id")


@migrations()
def m002_commands(db: sqlite_utils.Database) -> None:
    # Call commands from the panel, read by the daemon (MQTT commands arrive on the broker);
    # a row is a command's audit trail too: who, when, and whether it was applied.
    db["commands"].create(
        {
            "id": int,
            "at": float,
            "source": str,  # panel
            "user": str,
            "position": str,
            "payload": str,  # the cmd_call JSON object
            "state": str,  # pending, applied, rejected
            "reason": str,
            "done_at": float,
        },
        pk="id",
    )
    db["commands"].create_index(["state", "id"])
    db["commands"].create_index(["at"])


@migrations()
def m004a_panel_sessions(db: sqlite_utils.Database) -> None:
    # Panel sessions, server side: the cookie carries a random token, this table its SHA-256.
    # Deleting a row ends the session at its next request (logout, disable, delete, password).
    db["panel_sessions"].create(
        {"id": str, "user_id": int, "created_at": float, "last_seen_at": float, "ip": str},
        pk="id",
    )
    db["panel_sessions"].create_index(["user_id"])


@migrations()
def m006_transcripts_withheld(db: sqlite_utils.Database) -> None:
    # 1 when transcription was paused for the utterance (payment): its text was never stored
    db["transcripts"].add_column("withheld", int)


@migrations()
def m007_call_sip(db: sqlite_utils.Database) -> None:
    # calls the VoIP tap or the SIPREC recorder followed: the SIP Call-ID, caller and callee
    # (the customer's number pseudonymised; in clear only as customer_ref, like any reference)
    for column in ("sip_call_id", "caller", "callee"):
        db["calls"].add_column(column, str)
