"""The pipeline through real WAV replay, real SQLite and (where marked) real models."""

import json

import numpy as np
import pytest
from conftest import ROOT, needs_model
from support.fakes import FakeEmotion, FakeTranscriber, constant, result

from appliance.capture.wav import read_wav, write_wav
from appliance.config import config_from_dict
from appliance.ops.analysis import analyze_file
from appliance.ops.engines import Engines

DEMO = ROOT / "appliance" / "data" / "demo_call.wav"


def SpyModel() -> FakeEmotion:  # noqa: N802 (records every buffer that reaches "the model")
    return FakeEmotion(constant(result("neutral", 0.9, 0.3, 0.0, 0.0)))


def agent_only_call(tmp_path):
    rec = read_wav(DEMO)
    agent = rec.channels[0]
    silent_customer = np.random.default_rng(0).normal(0, 1e-4, len(agent)).astype(np.float32)
    p = tmp_path / "agent_only.wav"
    write_wav(p, [agent, silent_customer], rec.sample_rate)
    return p


def test_agent_audio_never_reaches_the_model_by_default(tmp_path):
    spy = SpyModel()
    result = analyze_file(
        agent_only_call(tmp_path),
        config_from_dict({}),
        Engines(spy, None, 0.0),
        db_path=tmp_path / "a.db",
    )
    agent_utts = [u for u in result["utterances"] if u["speaker"] == "agent"]
    assert len(agent_utts) >= 5
    assert spy.seen == []
    assert all(u["emotion"] is None and u["sentiment"] is None for u in agent_utts)


def test_agent_emotion_only_when_policy_allows(tmp_path):
    spy = SpyModel()
    cfg = config_from_dict({"policy": {"agent_emotion": True}})
    result = analyze_file(
        agent_only_call(tmp_path), cfg, Engines(spy, None, 0.0), db_path=tmp_path / "b.db"
    )
    assert len(spy.seen) >= 5
    assert any(u["emotion"] for u in result["utterances"] if u["speaker"] == "agent")


def test_customer_utterances_reach_the_model_in_order(tmp_path):
    spy = SpyModel()
    db = tmp_path / "c.db"
    result = analyze_file(DEMO, config_from_dict({}), Engines(spy, None, 0.0), db_path=db)
    cust = [u for u in result["utterances"] if u["speaker"] == "customer"]
    assert len(cust) == 9  # the demo script has nine customer turns
    assert len(spy.seen) == len(cust)
    import sqlite3

    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM utterances").fetchone()[0] == len(result["utterances"])
    kinds = dict(con.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall())
    assert kinds["utterance"] == len(result["utterances"])
    assert kinds["call"] >= 2  # opened + ended (+ live updates)
    state = con.execute("SELECT state FROM calls").fetchone()[0]
    assert state == "ended"
    con.close()


@needs_model
@pytest.mark.slow
def test_happy_to_angry_call_real_models(tmp_path):
    """Issue 6 acceptance: real emotion model and real STT on the bundled happy-to-angry call."""
    from appliance.ops.engines import load_engines

    cfg = config_from_dict({})
    result = analyze_file(DEMO, cfg, load_engines(cfg), db_path=tmp_path / "d.db")
    utts = result["utterances"]
    agent = [u for u in utts if u["speaker"] == "agent"]
    cust = [u for u in utts if u["speaker"] == "customer"]
    assert agent and all(u["emotion"] is None for u in agent)
    assert all(u["text"] for u in agent)  # agent gets text and timing only
    vals = [u["emotion"]["valence"] for u in cust]
    assert all(-1 <= v <= 1 for v in vals)
    assert np.mean(vals[:2]) - np.mean(vals[-3:]) > 0.5, vals
    call = result["call"]
    assert call["sentiment_start"] > call["sentiment_end"]
    assert call["sentiment_slope"] < 0
    assert any(a["rule"] in ("sentiment_declining", "customer_upset") for a in result["alerts"])
    last_customer_end = cust[-1]["end"]
    assert min(a["at"] for a in result["alerts"]) < last_customer_end  # fired during the call
    json.dumps(result)


def test_back_pressure_sheds_text_before_scores(tmp_path):
    """A slow STT engine and a small queue: agent text is shed first, no score is dropped."""

    from appliance.ops.analysis import Session
    from appliance.pipeline.call import CallMeta

    SlowStt = lambda: FakeTranscriber("fine thanks", delay_s=1.5)  # noqa: E731

    rec = read_wav(DEMO)
    session = Session(config_from_dict({}), tmp_path / "bp.db", Engines(SpyModel(), SlowStt(), 0.0))
    session.pipeline.jobs.maxsize = 16
    session.pipeline.block_when_full = (
        False  # behave like live capture: shed, never stall the reader
    )
    try:
        # six times real time: utterances arrive faster than the slow engine transcribes them
        call = session.replay(rec, ["agent", "customer"], CallMeta(), speed=6.0)
        stats = session.pipeline.stats
    finally:
        session.close()
    assert stats.stt_skipped > 0 and stats.overruns == 0
    assert len(call.results) == 18  # every utterance scored
    texts = {u["speaker"]: [] for u in call.results}
    for u in call.results:
        texts[u["speaker"]].append(u["text"])
    assert texts["agent"].count(None) >= texts["customer"].count(None)
