"""Pause and resume of transcription (issue 16): through the pipeline, the daemon's command path
and the panel. While paused, no text of either speaker is stored; emotion and timing go on."""

from __future__ import annotations

import json
import sqlite3
import time

from conftest import ROOT
from support.fakes import FakeEmotion, FakeTranscriber, ScriptedSource, constant, engines, result

from appliance.capture.sources import WavReplaySource
from appliance.capture.wav import read_wav
from appliance.config import config_from_dict
from appliance.ops.analysis import Session
from appliance.pipeline.call import CallMeta

DEMO = ROOT / "appliance" / "data" / "demo_call.wav"


def _rows(db, sql, args=()):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def test_paused_stretch_stores_no_text_of_either_speaker_but_keeps_scores(tmp_path):
    rec = read_wav(DEMO)
    cfg = config_from_dict({"redaction": {"auto_pause": False}})
    stt = FakeTranscriber("my account is fine thanks")
    emo = FakeEmotion(constant(result("neutral", 0.9, 0.3, 0.0, 0.1)))
    session = Session(cfg, tmp_path / "p.db", engines(emo, stt))
    try:
        src = WavReplaySource(rec, ["agent", "customer"])
        call = session.pipeline.open_call(CallMeta(), src.sample_rate, source="test")
        duration = rec.duration
        for chunk in src.chunks():
            pos = max(s.position for s in call.segmenters.values())
            if abs(pos - duration / 3) < 0.011:
                session.pipeline.pause_transcription(call, True)
            if abs(pos - 2 * duration / 3) < 0.011:
                session.pipeline.pause_transcription(call, False)
            session.pipeline.feed(call, chunk)
        session.pipeline.close_call(call)
        assert session.pipeline.wait(call, 60)
    finally:
        session.close()
    rows = _rows(
        tmp_path / "p.db",
        "SELECT u.speaker, u.start, u.end, t.text, t.withheld, u.emotion_label FROM utterances u"
        " JOIN transcripts t ON t.utterance_id = u.id ORDER BY u.start",
    )
    paused = [r for r in rows if r[4] == 1]
    kept = [r for r in rows if r[4] == 0]
    assert paused and kept
    assert all(r[3] == "" for r in paused)
    assert {r[0] for r in paused} == {"agent", "customer"}  # both speakers
    assert all(r[3] == "my account is fine thanks" for r in kept)
    # every withheld utterance overlaps the paused third; every kept one lies outside it
    lo, hi = duration / 3, 2 * duration / 3
    assert all(r[2] > lo - 0.05 and r[1] < hi + 0.05 for r in paused)
    assert all(r[2] <= lo + 0.05 or r[1] >= hi - 0.05 for r in kept)
    # emotion is still scored for the customer while paused
    assert all(r[5] == "neutral" for r in paused if r[0] == "customer")


def test_pause_command_reaches_the_call_through_the_daemon(tmp_path):
    from test_daemon import Running, _cfg

    rec = read_wav(DEMO)
    agent, customer = rec.channels
    cfg = _cfg(tmp_path, redaction={"auto_pause": False})
    db = cfg.resolve(cfg.paths.db)
    eng = engines(FakeEmotion(), FakeTranscriber("hello there"))
    with Running(cfg, lambda pos: ScriptedSource(agent, customer), engines_=eng) as d:
        d.dispatch({"position": "pos-1", "action": "start"})
        d.dispatch({"position": "pos-1", "action": "pause"})
        d.dispatch({"position": "pos-1", "action": "pause"})  # twice is fine
        deadline = time.monotonic() + 60  # the whole recording through the paused call
        while time.monotonic() < deadline and d.workers["pos-1"].stats.audio_s < rec.duration:
            time.sleep(0.1)
        d.dispatch({"position": "pos-1", "action": "end"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _rows(db, "SELECT state FROM calls") != [("ended",)]:
            time.sleep(0.1)
    rows = _rows(
        db,
        "SELECT t.text, t.withheld FROM transcripts t JOIN utterances u"
        " ON u.id = t.utterance_id ORDER BY u.end",
    )
    # the replay may run ahead of the commands: what ended before the pause keeps its text,
    # everything after it has none
    first = next(i for i, r in enumerate(rows) if r[1] == 1)
    assert all(r == ("hello there", 0) for r in rows[:first])
    assert len(rows) - first >= 10 and all(r == ("", 1) for r in rows[first:])


def test_panel_pauses_and_resumes_a_live_call(tmp_path):
    from test_panel import SUP, SUP_PW, csrf_from

    from appliance.panel import create_app, users
    from appliance.store import commands as command_rows
    from appliance.store.connection import connect

    db_path = tmp_path / "panel.db"
    rec = read_wav(DEMO)
    session = Session(config_from_dict({}), db_path, engines(FakeEmotion(), FakeTranscriber("hi")))
    try:
        src = WavReplaySource(rec, ["agent", "customer"])
        call = session.pipeline.open_call(CallMeta(position="pos-3"), src.sample_rate)
        for i, chunk in enumerate(src.chunks()):
            session.pipeline.feed(call, chunk)
            if i == 300:  # 6 s in
                session.pipeline.pause_transcription(call, True)
            if i == 600:
                break
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and session.pipeline.queue_depth:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        session.close()
    db = users.open_db(db_path)
    users.add_user(db, SUP, "supervisor", SUP_PW)
    db.conn.close()
    app = create_app({"DB_PATH": str(db_path), "SECRET_KEY": "k"})
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"username": SUP, "password": SUP_PW, "csrf_token": token})
    html = client.get(f"/calls/{call.id}").get_data(as_text=True)
    assert "Transcription paused" in html and "Resume transcription" in html
    assert "(transcription paused)" in html  # the withheld lines say so
    token = csrf_from(html)
    r = client.post(
        f"/calls/{call.id}/transcription", data={"action": "resume", "csrf_token": token}
    )
    assert r.status_code == 302
    assert (
        client.post(
            f"/calls/{call.id}/transcription", data={"action": "explode", "csrf_token": token}
        ).status_code
        == 400
    )
    assert (
        client.post(f"/calls/{call.id}/transcription", data={"action": "resume"}).status_code == 400
    )  # no CSRF token
    con = connect(db_path)
    try:
        queued = [json.loads(p) for _, p in command_rows.pending_after(con, 0)]
    finally:
        con.conn.close()
    assert [(c["position"], c["action"]) for c in queued] == [("pos-3", "resume")]
