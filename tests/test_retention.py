"""Retention per table, the `appliance retention` command, and a database that runs out of room."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from appliance.config import RetentionConfig
from appliance.publish import contract
from appliance.store.connection import connect
from appliance.store.retention import DAY, purge
from appliance.store.writer import Store

NOW = time.time()


def _health_msg(box: str = "box-t") -> tuple[str, dict]:
    body = {"uptime_s": 1.0, "outbox_pending": 0, "broker_connected": False}
    return ("health", contract.new_message("health", box, body))


def _call(store: Store, cid: str, started: float, state: str = "ended") -> None:
    store.write(
        upserts={
            "calls": [
                {
                    "id": cid,
                    "position": "pos-1",
                    "state": state,
                    "started_at": started,
                    "ended_at": started + 60 if state == "ended" else None,
                    "metrics": "{}",
                }
            ]
        }
    )


def _utt(store: Store, cid: str, idx: int, created: float, text: str | None = "hello") -> int:
    row = {
        "call_id": cid,
        "idx": idx,
        "speaker": "customer",
        "start": float(idx),
        "end": idx + 1.0,
        "sentiment": 0.1,
        "created_at": created,
    }
    tr = (
        {"call_id": cid, "text": text, "words": "[]", "engine": "none", "created_at": created}
        if text is not None
        else None
    )
    return store.write_utterance(row, tr, [_health_msg()])


def _count(db_path, table: str, where: str = "1") -> int:
    db = connect(db_path, readonly=True)
    try:
        return db.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}").fetchone()[0]
    finally:
        db.conn.close()


@pytest.fixture
def populated(tmp_path):
    db = tmp_path / "r.db"
    s = Store(db)
    old, mid, new = NOW - 400 * DAY, NOW - 30 * DAY, NOW - 1 * DAY
    _call(s, "c-old", old)
    _utt(s, "c-old", 0, old)
    _call(s, "c-mid", mid)
    _utt(s, "c-mid", 0, mid)
    _utt(s, "c-mid", 1, mid)
    _call(s, "c-new", new)
    _utt(s, "c-new", 0, new)
    _call(s, "c-live", old, state="live")  # never ended: kept, its old utterances go
    _call(s, "c-crashed", old, state="aborted")  # closed after a crash: purged like an ended one
    _utt(s, "c-live", 0, old)
    alerts = [
        {"id": "a-old", "call_id": "c-old", "created_at": NOW - 200 * DAY},
        {"id": "a-new", "call_id": "c-new", "created_at": new},
    ]
    s.write(upserts={"alerts": alerts})
    s.write(
        upserts={
            "relationships": [
                {"customer_ref": "R-old", "updated_at": old},
                {"customer_ref": "R-new", "updated_at": new},
            ]
        }
    )
    s.event("boot", {})
    # outbox: 5 rows from the utterances; mark them sent at various ages, keep one unsent
    seqs = [r[0] for r in s.db.execute("SELECT seq FROM outbox ORDER BY seq").fetchall()]
    sent = {seqs[0]: NOW - 30 * DAY, seqs[1]: NOW - 8 * DAY, seqs[2]: NOW - 1 * DAY}
    for seq, at in sent.items():
        s.db.execute("UPDATE outbox SET sent_at = ? WHERE seq = ?", [at, seq])
    s.db.execute("UPDATE outbox SET created_at = ? WHERE seq = ?", [NOW - 300 * DAY, seqs[3]])
    s.close()
    return db, seqs


def test_purge_per_table(populated):
    db, seqs = populated
    cfg = RetentionConfig(transcripts_days=7, scores_days=365, outbox_sent_days=7, alerts_days=180)
    counts = purge(db, cfg, now=NOW)
    assert counts["calls"] == 2  # c-old (ended) and c-crashed (aborted), 400 days; c-live stays
    assert counts["utterances"] == 2  # c-old's and c-live's 400-day-old utterances
    assert counts["transcripts"] == 4  # 30 and 400 days old: past 7 days
    assert counts["alerts"] == 1
    assert counts["relationships"] == 1
    assert counts["outbox"] == 2  # sent 30 and 8 days ago; the one sent yesterday stays
    assert _count(db, "transcripts") == 1  # c-new's, 1 day old: transcripts go first...
    assert _count(db, "utterances", "call_id = 'c-mid'") == 2  # ...scores stay longer
    assert _count(db, "calls") == 3
    # never an unsent row, however old
    assert _count(db, "outbox", "sent_at IS NULL") == len(seqs) - 3
    assert _count(db, "outbox", f"seq = {seqs[3]}") == 1
    # the seq counter survives even if every row is gone
    db_ = connect(db, readonly=True)
    assert int(
        db_.execute("SELECT value FROM settings WHERE key='outbox.last_seq'").fetchone()[0]
    ) == max(seqs)
    db_.conn.close()
    assert purge(db, cfg, now=NOW) == dict.fromkeys(counts, 0)  # idempotent


def test_zero_day_transcripts_and_cli(populated, tmp_path):
    db, _ = populated
    conf = tmp_path / "a.toml"
    conf.write_text(
        f'[paths]\ndb = "{db}"\n[retention]\ntranscripts_days = 0.0\nscores_days = 100000.0\n'
        "outbox_sent_days = 100000.0\nalerts_days = 100000.0\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "retention", "--config", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    counts = json.loads(out.stdout)
    assert counts["transcripts"] == 5 and counts["utterances"] == 0 and counts["outbox"] == 0
    assert _count(db, "transcripts") == 0 and _count(db, "utterances") == 5


def test_full_database_keeps_scores_and_outbox_drops_transcripts(tmp_path):
    """SQLITE_FULL (PRAGMA max_page_count): transcripts stop, scores and the outbox go on."""
    db = tmp_path / "full.db"
    s = Store(db, min_free_mb=0.0)
    _call(s, "c1", time.time())
    _utt(s, "c1", 0, time.time(), text="fits")
    pages = s.db.execute("PRAGMA page_count").fetchone()[0]
    s.db.execute(f"PRAGMA max_page_count = {pages + 12}")
    big = "x" * 200_000  # a transcript that cannot fit in 12 more pages
    n_before = _count(db, "outbox")
    for i in range(1, 6):
        _utt(s, "c1", i, time.time(), text=big)
    assert s.transcripts_suspended
    assert _count(db, "utterances") == 6  # every score landed
    assert _count(db, "outbox") == n_before + 5  # and its outbox row with it
    assert _count(db, "transcripts") == 1  # only the one written before the disk filled
    assert s.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    s.close()
    # retention frees room; the database is still sound
    purge(db, RetentionConfig(transcripts_days=0.0), now=time.time() + 1)
    db_ = connect(db, readonly=True)
    assert db_.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db_.conn.close()


def test_health_alarm_when_transcripts_are_suspended(tmp_path):
    from appliance.config import config_from_dict
    from appliance.ops.health import HealthMonitor, RuntimeSnapshot, engines_info

    class Box:  # what health reads of a daemon (ops.health.HealthSource)
        cfg = config_from_dict({"paths": {"db": str(tmp_path / "h.db")}})
        db_path = tmp_path / "h.db"
        started_at = time.time()

        def runtime_snapshot(self):
            return RuntimeSnapshot(transcripts_suspended=store.transcripts_suspended)

        def engines_info(self):
            return engines_info(None)

    d = Box()
    store = Store(d.db_path)
    store.transcripts_suspended = True
    mon = HealthMonitor(d, store)
    snap = mon.collect_and_store(publish=True)
    assert "disk_low" in snap["alarms"]
    row = store.db.execute("SELECT payload FROM outbox WHERE kind='health'").fetchone()
    assert "disk_low" in json.loads(row[0])["alarms"]
    mon.close()
    store.close()


def test_panel_rows_commands_and_stale_settings_are_purged(tmp_path):
    from appliance.panel import users
    from appliance.store import commands, settings
    from appliance.store.connection import immediate

    db_path = tmp_path / "p.db"
    db = users.open_db(db_path)
    old, new = NOW - 200 * DAY, NOW - 1 * DAY
    for at in (old, new):
        users.audit(db, "login_ok", "sup")
        db.execute(
            "UPDATE panel_audit SET at = ? WHERE id = (SELECT MAX(id) FROM panel_audit)", [at]
        )
        cid, _ = commands.enqueue(db, {"position": "pos-1", "action": "start"}, user="sup")
        db.execute("UPDATE commands SET at = ? WHERE id = ?", [at, cid])
    with immediate(db):
        settings.put(db, settings.segment_key("vip"), "{}", now=NOW - 400 * DAY)
        settings.put(db, settings.segment_key("gold"), "{}", now=new)
        settings.put(db, "cmd:pos-1", "{}", now=new)  # an older version's per-command key
        settings.put(db, settings.HEALTH, "{}", now=old)  # the daemon's: kept however old
        db.execute("INSERT INTO panel_sessions VALUES ('a', 1, ?, ?, '')", [NOW - 8 * DAY] * 2)
        db.execute("INSERT INTO panel_sessions VALUES ('b', 1, ?, ?, '')", [new, new])
    db.conn.close()
    counts = purge(db_path, RetentionConfig(audit_days=180.0), now=NOW)
    assert counts["panel_audit"] == 1 and counts["commands"] == 1
    assert counts["settings"] == 2 and counts["panel_sessions"] == 1
    assert _count(db_path, "panel_audit") == 1 and _count(db_path, "commands") == 1
    keys = {k for (k,) in connect(db_path, readonly=True).execute("SELECT key FROM settings")}
    assert keys == {"segment:gold", "health", "outbox.last_seq"}
    # a database the panel never opened has no panel_audit table: nothing to purge, no error
    Store(tmp_path / "bare.db").close()
    assert "panel_audit" not in purge(tmp_path / "bare.db", RetentionConfig(), now=NOW)
