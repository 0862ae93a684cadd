"""A database that cannot be written: commands say so in one line and exit non-zero; health
goes on; write transactions are short (nothing slow inside the write lock).

The full disk is real: a small tmpfs (`small_disk`, needs root to mount; skipped otherwise)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import ROOT
from support.fakes import FakeEmotion, FakeTranscriber, alternating, engines, result

from appliance.capture.wav import read_wav
from appliance.config import config_from_dict
from appliance.ops.analysis import Session
from appliance.ops.health import HealthMonitor, RuntimeSnapshot
from appliance.pipeline.call import CallMeta
from appliance.publish import contract
from appliance.store.connection import connect
from appliance.store.writer import Store

DEMO = ROOT / "appliance" / "data" / "demo_call.wav"
CLI = [sys.executable, "-m", "appliance.cli"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def one_line_error(p: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), p.stderr[-2000:]
    return last


def test_analyze_on_a_full_disk_exits_1_in_one_line(small_disk):
    db = small_disk.path / "box.db"
    Store(db).close()
    small_disk.fill()
    p = cli("analyze", str(DEMO), "--db", str(db), "--no-stt")
    assert p.returncode == 1
    line = one_line_error(p)
    assert str(db) in line and "MB free" in line


def test_analyze_whose_writes_fail_midway_is_not_a_success(small_disk):
    """The disk fills during the call: before, `analyze` printed its result and exited 0 with
    4 of 18 utterances stored. Now it exits 1 and says how many writes failed; the next run,
    with room again, closes the half-stored call as aborted."""
    db = small_disk.path / "box.db"
    Store(db).close()
    small_disk.fill(leave=300_000)
    p = cli("analyze", str(DEMO), "--db", str(db), "--no-stt", "--json")
    assert p.returncode == 1, p.stdout[-500:]
    assert p.stdout == ""  # no result is printed for a call that was not stored
    line = one_line_error(p)
    assert "write(s) of call" in line and "full" in line
    small_disk.release()
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert 0 < con.execute("SELECT COUNT(*) FROM utterances").fetchone()[0] < 18
    finally:
        con.close()
    p = cli("analyze", str(DEMO), "--db", str(db), "--no-stt")
    assert p.returncode == 0, p.stderr[-2000:]
    con = sqlite3.connect(db)
    try:
        states = sorted(r[0] for r in con.execute("SELECT state FROM calls"))
    finally:
        con.close()
    assert states == ["aborted", "ended"]


def test_outbox_flush_on_a_full_disk_reports_without_a_traceback(small_disk, broker):
    db = small_disk.path / "box.db"
    store = Store(db)
    body = {"uptime_s": 1.0, "outbox_pending": 0, "broker_connected": True}
    store.write(messages=[("health", contract.new_message("health", "box-01", body))])
    store.close()
    small_disk.fill()
    p = cli("outbox", "flush", "--db", str(db), "--mqtt", broker.url, "--timeout", "3")
    assert p.returncode == 1
    assert "cannot open the database" in one_line_error(p)
    p = cli("outbox", "status", "--db", str(db))
    assert p.returncode == 1
    one_line_error(p)


class _Box:
    """What HealthMonitor reads of a daemon (fixed facts and one snapshot call)."""

    def __init__(self, db_path: Path):
        self.cfg = config_from_dict({})
        self.db_path = db_path
        self.started_at = time.time()

    def runtime_snapshot(self) -> RuntimeSnapshot:
        return RuntimeSnapshot()

    def engines_info(self) -> dict:
        return {"emotion": {}, "stt": {"engine": "none"}}


def test_health_snapshots_go_on_when_the_disk_is_full(small_disk):
    db = small_disk.path / "box.db"
    store = Store(db)
    health = HealthMonitor(_Box(db), store)
    try:
        assert health.collect_and_store()["outbox_pending"] == 0
        small_disk.fill()
        snap = health.collect_and_store()  # refused by the database, not lost for /metrics
        assert health.store_failures == 1 and health.last is snap
        small_disk.release()
        health.collect_and_store()
        assert health.store_failures == 1
    finally:
        health.close()
        store.close()


def test_health_reads_while_another_connection_holds_the_write_lock(tmp_path):
    db = tmp_path / "box.db"
    store = Store(db)
    body = {"uptime_s": 1.0, "outbox_pending": 0, "broker_connected": True}
    store.write(messages=[("health", contract.new_message("health", "box-01", body))])
    health = HealthMonitor(_Box(db), store)
    other = connect(db)
    held = threading.Event()
    release = threading.Event()

    def writer():
        other.conn.execute("BEGIN IMMEDIATE")
        other.conn.execute("INSERT INTO events (at, kind, detail) VALUES (0, 'x', '{}')")
        held.set()
        release.wait(10)
        other.conn.execute("COMMIT")

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert held.wait(5)
        t0 = time.monotonic()
        snap = health.collect()
        assert time.monotonic() - t0 < 1.0
        assert snap["outbox_pending"] == 1
    finally:
        release.set()
        t.join(10)
        other.conn.close()
        health.close()
        store.close()


def test_write_transactions_hold_only_prepared_statements(tmp_path, monkeypatch):
    """Under a saturated CPU every statement inside the write lock costs a wait for the GIL,
    and Python work inside it runs at a fraction of its speed: each transaction of a call now
    runs at most 8 prepared statements and no JSON Schema check (before: 30 statements, built
    by sqlite-utils, with the contract check of every message inside)."""
    session = Session(
        config_from_dict({}),
        tmp_path / "box.db",
        engines(FakeEmotion(alternating(result("angry"), result())), FakeTranscriber("not happy")),
    )
    state = {"in": False, "n": 0}
    per_txn: list[int] = []
    checks_inside: list[str] = []
    real_check = contract.check_payload

    def check(kind, payload):
        if state["in"]:
            checks_inside.append(kind)
        return real_check(kind, payload)

    def trace(sql: str) -> None:
        word = sql.lstrip().split(None, 1)[0].upper()
        if word == "BEGIN":
            state.update({"in": True, "n": 0})
        elif state["in"]:
            state["n"] += 1
            if word in ("COMMIT", "ROLLBACK"):
                per_txn.append(state["n"])
                state["in"] = False

    monkeypatch.setattr(contract, "check_payload", check)
    session.store.db.conn.set_trace_callback(trace)
    try:
        session.replay(read_wav(DEMO), ["agent", "customer"], CallMeta(customer_ref="CRM-1"))
    finally:
        session.close()
    assert len(per_txn) >= 18  # every utterance, the call's open and end
    assert max(per_txn) <= 8, per_txn
    assert checks_inside == []
