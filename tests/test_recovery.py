"""Calls a crash left open: closed as `aborted` when the store opens again, with what was scored.

The crash is real where it matters: a child process is killed with -9 in the middle of a call
(the crash loop against a real broker is in test_faults.py)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from conftest import ROOT
from support.fakes import FakeEmotion, alternating, result

from appliance.capture.wav import read_wav
from appliance.config import config_from_dict
from appliance.ops.analysis import Session
from appliance.ops.engines import Engines
from appliance.pipeline.call import CallMeta
from appliance.publish import contract
from appliance.store.writer import Store

DEMO = ROOT / "appliance" / "data" / "demo_call.wav"

CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from support.fakes import FakeEmotion, alternating, result
from appliance.capture.wav import read_wav
from appliance.config import config_from_dict
from appliance.ops.analysis import Session
from appliance.ops.engines import Engines
from appliance.pipeline.call import CallMeta
from appliance.capture.sources import WavReplaySource

model = FakeEmotion(alternating(result("angry", 0.8, 0.6, 0.5, -0.6), result("neutral")))
s = Session(config_from_dict({{}}), {db!r}, Engines(model, None, 0.0))
rec = read_wav({wav!r})
src = WavReplaySource(rec, ["agent", "customer"])
call = s.pipeline.open_call(CallMeta(customer_ref="CRM-7", segment="gold"), src.sample_rate)
for chunk in src.chunks():
    s.pipeline.feed(call, chunk)
print("fed", flush=True)
time.sleep(60)  # killed here: the call is never closed
"""


def rows(db, sql):
    con = sqlite3.connect(db, timeout=10)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def kill_mid_call(tmp_path):
    """A child process scores most of the demo call and is killed with -9 before it ends."""
    db = tmp_path / "box.db"
    code = CHILD.format(tests=str(ROOT / "tests"), db=str(db), wav=str(DEMO))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"fed"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the writer committed the fed utterances
            n = rows(db, "SELECT COUNT(*) FROM utterances")[0][0]
            if n >= 10:
                break
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert rows(db, "SELECT state FROM calls") == [("live",)]
    return db


def session(db):
    return Session(config_from_dict({}), db, Engines(FakeEmotion(alternating(result())), None, 0.0))


def test_a_call_left_live_by_kill_9_is_closed_as_aborted_with_its_scores(tmp_path):
    db = kill_mid_call(tmp_path)
    live_metrics = json.loads(rows(db, "SELECT metrics FROM calls")[0][0])
    assert live_metrics["customer_utterances"] >= 3

    s = session(db)  # the next process on this database
    s.close()
    [(state, ended_at, started_at, metrics)] = rows(
        db, "SELECT state, ended_at, started_at, metrics FROM calls"
    )
    assert state == "aborted"
    assert ended_at == started_at + live_metrics["duration"]
    assert json.loads(metrics)["customer_utterances"] == live_metrics["customer_utterances"]
    [(payload,)] = rows(
        db,
        "SELECT payload FROM outbox WHERE kind = 'call' AND"
        " json_extract(payload, '$.state') = 'aborted'",
    )
    msg = json.loads(payload)
    contract.check_payload("call", msg)
    assert msg["customer_utterances"] == live_metrics["customer_utterances"]
    assert msg["sentiment_mean"] == live_metrics["sentiment_mean"]
    assert msg["customer"].startswith("c-")  # pseudonymised, like every call message
    # an incomplete call is no evidence about the customer: no relationship update
    assert rows(db, "SELECT COUNT(*) FROM relationships") == [(0,)]


def test_live_calls_of_a_writer_still_running_are_left_alone(tmp_path):
    db = tmp_path / "box.db"
    running = session(db)  # e.g. the daemon
    try:
        call = running.pipeline.open_call(CallMeta(), 16000)
        rec = read_wav(DEMO)
        running.pipeline.feed(
            call, {"agent": rec.channels[0][:16000], "customer": rec.channels[1][:16000]}
        )
        deadline = time.monotonic() + 10
        while not rows(db, "SELECT state FROM calls") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rows(db, "SELECT state FROM calls") == [("live",)]
        other = Store(db)  # e.g. `appliance analyze --db` on the daemon's database
        assert other.orphans == []
        other.close()
        s2 = session(db)
        s2.close()
        assert rows(db, "SELECT state FROM calls") == [("live",)]
        running.pipeline.close_call(call)
        assert running.pipeline.wait(call, 10)
    finally:
        running.close()
    assert rows(db, "SELECT state FROM calls") == [("ended",)]


def test_an_orphan_whose_row_cannot_make_a_message_is_still_closed(tmp_path):
    db = tmp_path / "box.db"
    store = Store(db)
    store.write(upserts={"calls": [{"id": "bad id with spaces", "position": "p", "state": "live"}]})
    store.close()
    s = session(db)
    s.close()
    assert rows(db, "SELECT state FROM calls") == [("aborted",)]
    assert rows(db, "SELECT COUNT(*) FROM outbox WHERE kind = 'call'") == [(0,)]
