import json
import sqlite3
import time

import pytest

from appliance.publish import contract
from appliance.store.connection import connect, migrate
from appliance.store.outbox import outbox_status


def _utt(call_id="c1", idx=0):
    return {
        "call_id": call_id,
        "idx": idx,
        "speaker": "customer",
        "start": 0.0,
        "end": 1.0,
        "sentiment": 0.1,
        "created_at": time.time(),
    }


def _msg(call_id="c1", idx=0):
    body = {
        "call_id": call_id,
        "position": "p1",
        "speaker": "customer",
        "index": idx,
        "start": 0.0,
        "end": 1.0,
        "emotion": None,
        "sentiment": 0.1,
    }
    return ("utterance", contract.new_message("utterance", "test-box", body))


def _call(call_id="c1"):
    return {
        "id": call_id,
        "position": "p1",
        "call_type": "support",
        "state": "live",
        "started_at": time.time(),
        "duration": 0.0,
        "metrics": "{}",
        "alerts": 0,
    }


def test_migrations_are_idempotent(fresh_db):
    migrate(fresh_db.db)
    migrate(fresh_db.db)
    assert {"calls", "utterances", "transcripts", "alerts", "relationships", "outbox"} <= set(
        fresh_db.db.table_names()
    )
    assert fresh_db.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_scores_and_outbox_rows_commit_together(fresh_db):
    uid = fresh_db.write_utterance(
        _utt(),
        {"call_id": "c1", "text": "hello", "words": "[]", "engine": "t", "created_at": 0},
        [_msg()],
        upserts={"calls": [_call()]},
    )
    assert fresh_db.db["transcripts"].get(uid)["text"] == "hello"
    rows = list(fresh_db.db["outbox"].rows)
    assert len(rows) == 1 and rows[0]["sent_at"] is None
    payload = json.loads(rows[0]["payload"])
    assert payload["seq"] == rows[0]["seq"] == 1 and payload["msg_id"] == rows[0]["msg_id"]


def test_a_refused_payload_rolls_back_the_scores(fresh_db):
    kind, bad = _msg()
    bad = {**bad, "transcript": "my card number is 4111"}
    with pytest.raises(contract.ContractError):
        fresh_db.write_utterance(_utt(), None, [(kind, bad)], upserts={"calls": [_call()]})
    assert fresh_db.db["utterances"].count == 0
    assert fresh_db.db["outbox"].count == 0


def test_seq_increases_across_writes(fresh_db):
    for i in range(5):
        fresh_db.write_utterance(_utt(idx=i), None, [_msg(idx=i)], upserts={"calls": [_call()]})
    seqs = [r["seq"] for r in fresh_db.db.query("SELECT seq FROM outbox ORDER BY seq")]
    assert seqs == [1, 2, 3, 4, 5]
    st = outbox_status(fresh_db.path)
    assert st["pending"] == 5 and st["sent"] == 0


def test_full_disk_drops_transcripts_not_scores(tmp_path):
    from appliance.store.writer import Store

    store = Store(tmp_path / "small.db", box_id="test-box")
    store.write_utterance(_utt(idx=0), None, [_msg(idx=0)], upserts={"calls": [_call()]})
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages + 3}")
    big = "word " * 20000  # a transcript far bigger than the pages left
    stored = 0
    for i in range(1, 6):
        try:
            store.write_utterance(
                _utt(idx=i),
                {"call_id": "c1", "text": big, "words": "[]", "engine": "t", "created_at": 0},
                [_msg(idx=i)],
                upserts={"calls": [_call()]},
            )
            stored += 1
        except sqlite3.OperationalError:
            break
    assert stored >= 1
    assert store.transcripts_suspended
    assert store.db["transcripts"].count == 0
    assert store.db["outbox"].count == stored + 1
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()


def test_readonly_connection(fresh_db):
    db = connect(fresh_db.path, readonly=True)
    with pytest.raises(sqlite3.OperationalError):
        db.execute("INSERT INTO settings(key, value) VALUES ('a', 'b')")
    db.conn.close()


def test_outbox_text_is_the_payload_with_its_seq(fresh_db):
    """The payload is serialised before the write lock with a placeholder seq, numbered inside
    it: whatever digits the values hold (a float's 999999999999 tail, the placeholder itself as
    an index), the stored text is exactly the payload with its seq."""
    bodies = [
        {"uptime_s": 999999999999.0, "outbox_pending": 999999999999, "broker_connected": True},
        {"uptime_s": 0.14999999999999997, "outbox_pending": 0, "broker_connected": False},
    ]
    msgs = [("health", contract.new_message("health", "test-box", b)) for b in bodies]
    stamped = fresh_db.write(messages=msgs)
    stored = [
        json.loads(p) for (p,) in fresh_db.db.execute("SELECT payload FROM outbox ORDER BY seq")
    ]
    assert stored == stamped
    assert [p["seq"] for p in stored] == [1, 2]
    assert [p["outbox_pending"] for p in stored] == [999999999999, 0]
