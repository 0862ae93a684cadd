"""Streaming partials: a keyword rule fires while the customer is still speaking, through the
writer and the outbox like every alert, and never while the call's redaction context holds,
expects a sensitive answer or is paused. The partial's text is stored nowhere."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_model
from support.fakes import FakeEmotion

from appliance.capture.wav import Recording
from appliance.config import config_from_dict
from appliance.ops.analysis import Session
from appliance.ops.engines import Engines
from appliance.pipeline.call import CallMeta
from appliance.types import Transcript

PHRASE_TEXT = (
    "I have been waiting on hold for forty minutes and I want to speak to a manager "
    "right now because nobody ever calls me back about my broken boiler"
)
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


def _alerts(store) -> list[dict]:
    return list(store.db["alerts"].rows)


def _session(tmp_path: Path, transcriber=None, **stt) -> Session:
    cfg = config_from_dict({"stt": stt} if stt else {})
    return Session(cfg, tmp_path / "p.db", Engines(FakeEmotion(), transcriber, 0.0))


def _open(session: Session, sr: int = 16000):
    call = session.pipeline.open_call(CallMeta(), sr, source="test")
    return call


@pytest.mark.parametrize("state", ["open", "paused", "armed"])
def test_partial_key_phrase_alert_goes_through_the_writer(tmp_path: Path, state: str) -> None:
    session = _session(tmp_path)
    try:
        p = session.pipeline
        call = _open(session)
        if state == "paused":
            p.pause_transcription(call, True)
        if state == "armed":
            # the agent asked for the card number: the context expects a sensitive answer
            ask = Transcript("Could you read me the long card number please?")
            call.redaction.add(0, "agent", 0.0, 2.0, ask)
            assert call.redaction.state().armed
        p._put_partial(("partial", call, ["speak to a manager"], 3.5))
        p.close_call(call)
        assert p.wait(call, 10)
        rows = _alerts(session.store)
        outbox = [r for r in session.store.db["outbox"].rows if r["kind"] == "alert"]
    finally:
        session.close()
    if state != "open":
        assert rows == [] and outbox == []
        return
    assert [r["rule"] for r in rows] == ["escalation_phrase"]
    assert rows[0]["at"] == 3.5 and '"partial": true' in rows[0]["evidence"]
    assert len(outbox) == 1  # the one publishing path: queued with the contract check
    assert "manager" not in outbox[0]["payload"]  # the phrase itself never leaves the box


def test_no_partials_without_a_streaming_engine(tmp_path: Path) -> None:
    from support.fakes import FakeTranscriber

    session = _session(tmp_path, FakeTranscriber("hello"))
    try:
        assert session.pipeline.partials is None  # a transcriber without partials
    finally:
        session.close()
    session = _session(tmp_path / "b", None)
    try:
        assert session.pipeline.partials is None
    finally:
        session.close()


def _espeak(tmp_path: Path, text: str, sr: int = 16000) -> np.ndarray:
    raw = tmp_path / "raw.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(raw), text], check=True)
    from appliance.capture.resample import resample
    from appliance.tools.stt_sets import read_audio

    x, rate = read_audio(raw)
    return resample(x, rate, sr).astype(np.float32) * 0.5


@needs_model
@needs_espeak
@pytest.mark.slow
def test_keyword_fires_before_the_utterance_ends(tmp_path: Path) -> None:
    """Real Whisper tiny.en on a real-time replay: the escalation alert is committed before the
    VAD closes the customer's utterance. Time to first keyword = alert commit - the end of the
    word "manager" in the audio (both on the replay's clock)."""
    from appliance.ops.engines import load_engines

    sr = 16000
    speech = _espeak(tmp_path, PHRASE_TEXT, sr)
    noise = np.random.default_rng(0).normal(0, 3e-4, sr).astype(np.float32)
    audio = np.concatenate([noise, speech, noise, noise])
    cfg = config_from_dict({"stt": {"threads": 1, "partial_interval_s": 1.0}})
    engines = load_engines(cfg)
    session = Session(cfg, tmp_path / "k.db", engines)
    closed: list[float] = []  # when the VAD closed each utterance, in commit order
    session.pipeline.listeners.append(lambda c: closed.append(c.ended_at))
    offset = time.time() - time.monotonic()
    try:
        t0 = time.monotonic()
        call = session.replay(Recording((audio,), sr), ["customer"], CallMeta(), speed=1.0)
        alerts = _alerts(session.store)
        transcripts = list(session.store.db["transcripts"].rows)
    finally:
        session.close()
    k, utt = next(
        (k, u) for k, u in enumerate(call.results) if "manager" in (u["text"] or "").lower()
    )
    assert [a["rule"] for a in alerts] == ["escalation_phrase"], alerts
    alert = alerts[0]
    assert '"partial": true' in alert["evidence"]
    alert_at = alert["created_at"] - offset  # monotonic
    utterance_closed = closed[k]  # call.results is in commit order too
    assert alert_at < utterance_closed, "the rule fired only after the utterance ended"
    words = next(t for t in transcripts if "manager" in t["text"].lower())["words"]
    import json

    manager_end = next(w for w in json.loads(words) if "manager" in w["w"].lower())["e"]
    phrase_end = t0 + utt["start"] + manager_end
    to_first_keyword = alert_at - phrase_end
    print(
        f"time to first keyword {to_first_keyword:.2f} s; "
        f"{utterance_closed - alert_at:.2f} s before the utterance closed"
    )
    assert to_first_keyword < 3.0
    # only final text is stored: one row per utterance, none from a partial
    assert len(transcripts) == len(call.results)


def test_partials_yield_to_final_decodes_waiting_for_a_worker() -> None:
    """A Whisper partial re-decodes the growing utterance: while stored text waits for an STT
    worker, the open utterance gets no more partials (24 calls fell behind real time without it)."""
    from types import SimpleNamespace

    from appliance.pipeline.partials import Partials

    class Stream:
        def accept(self, audio: np.ndarray) -> str:
            return "I want to speak to a manager"

    engine = SimpleNamespace(stream=lambda sr: Stream())
    put: list[tuple] = []
    behind = [True]
    partials = Partials(engine, lambda job: put.append(job) or True, busy=lambda: behind[0])
    call = SimpleNamespace(partial=None, language="en", sample_rate=16000)

    def segmenter(since: float) -> SimpleNamespace:
        return SimpleNamespace(
            open_since=since, open_audio=lambda frames: (np.ones(320, np.float32), frames + 16)
        )

    try:
        partials.feed(call, segmenter(1.0))
        partials.feed(call, segmenter(1.0))  # the rest of a shed utterance stays shed
        assert (partials.skipped, partials.decoded, put) == (1, 0, [])
        behind[0] = False
        partials.feed(call, segmenter(1.0))
        assert partials.decoded == 0  # still the same utterance
        partials.feed(call, segmenter(5.0))  # the next utterance, workers idle again
    finally:
        partials.stop()
    assert partials.decoded == 1 and [j[2] for j in put] == [["speak to a manager"]]
