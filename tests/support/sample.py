"""A sample database for the panel, made by the real pipeline with scripted stand-in engines.

`fill_sample(db_path)` replays synthetic two-channel calls through `appliance.ops.analysis.Session`
(VAD, scoring, rules, relationships, store and outbox all real); only the emotion model and the
transcriber are scripted: each utterance is a tone whose pitch encodes its line in the script,
so the stand-ins know which valence/arousal/label and which (already redacted) text to return.
Used by the panel tests and for working on the pages without the trained model:
`python -m appliance.panel.sample /tmp/sample.db`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from appliance.capture.wav import Recording
from appliance.config import AppConfig, config_from_dict
from appliance.pipeline.call import CallMeta
from appliance.types import EmotionResult
from support.fakes import FakeEmotion, FakeTranscriber, engines

SR = 16000
BASE_HZ, STEP_HZ = 180.0, 10.0

# (speaker, seconds, text, valence, arousal, label) -- valence/arousal/label for the customer only
UPSET = [
    (
        "agent",
        2.2,
        "Thank you for calling, this is Sam. How can I help you today?",
        None,
        None,
        None,
    ),
    (
        "customer",
        2.6,
        "Hi, my internet has been down since yesterday morning.",
        -0.1,
        0.0,
        "neutral",
    ),
    ("agent", 2.0, "I am sorry to hear that. Can I have your account number?", None, None, None),
    ("customer", 2.4, "Sure, it is [ID]. I already called twice about this.", -0.3, 0.3, "sad"),
    ("agent", 2.4, "Thanks. I can see an open ticket, let me check the status.", None, None, None),
    (
        "customer",
        2.8,
        "This is ridiculous, nobody ever calls me back. I am really angry.",
        -0.7,
        0.8,
        "angry",
    ),
    ("agent", 1.8, "I understand, I will escalate it right now.", None, None, None),
    (
        "customer",
        2.6,
        "I pay every month and get nothing. This is terrible service.",
        -0.8,
        0.9,
        "angry",
    ),
    (
        "customer",
        2.2,
        "I want to cancel my contract if this is not fixed today.",
        -0.75,
        0.7,
        "angry",
    ),
    ("agent", 2.6, "A technician can come this afternoon between two and four.", None, None, None),
    ("customer", 2.0, "Fine. Please make sure they actually come.", -0.3, 0.2, "neutral"),
]
HAPPY = [
    ("agent", 2.0, "Good morning, thanks for calling. How can I help?", None, None, None),
    ("customer", 2.4, "Hi! I saw your new fibre offer and I love it.", 0.6, 0.6, "happy"),
    ("agent", 2.2, "Great choice, it doubles your speed for the same price.", None, None, None),
    (
        "customer",
        2.6,
        "That is wonderful, my kids will be so happy. Sign me up.",
        0.8,
        0.7,
        "happy",
    ),
    ("agent", 2.0, "Done. Anything else I can do for you?", None, None, None),
    ("customer", 2.4, "No, that is perfect, thank you so much, great service!", 0.85, 0.6, "happy"),
    ("customer", 2.0, "I will tell my neighbours about it too.", 0.7, 0.5, "happy"),
]
NEUTRAL = [
    ("agent", 2.0, "Hello, billing department, how can I help?", None, None, None),
    ("customer", 2.4, "I would like to check the date of my last payment.", 0.0, -0.1, "neutral"),
    ("agent", 2.0, "It was received on the third of this month.", None, None, None),
    ("customer", 2.2, "Okay, and the next one is due when?", 0.05, -0.2, "neutral"),
    ("agent", 1.8, "On the third of next month.", None, None, None),
    ("customer", 1.8, "Alright, thanks.", 0.2, -0.2, "neutral"),
]
SOUR = [
    ("agent", 2.0, "Hello, how can I help you today?", None, None, None),
    (
        "customer",
        2.4,
        "My bill is higher again this month and I do not understand why.",
        -0.3,
        0.3,
        "sad",
    ),
    ("agent", 2.2, "Let me look at the charges with you.", None, None, None),
    ("customer", 2.4, "This keeps happening and it is frustrating.", -0.45, 0.5, "angry"),
    ("agent", 2.0, "I see a roaming charge, I can refund half of it.", None, None, None),
    ("customer", 2.0, "Half? That is not good enough.", -0.5, 0.5, "angry"),
]
SCRIPTS = {"upset": UPSET, "happy": HAPPY, "neutral": NEUTRAL, "sour": SOUR}


def _freq(i: int) -> float:
    return BASE_HZ + STEP_HZ * i


def _index(audio: np.ndarray, sr: int) -> int:
    x = np.asarray(audio, np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=1 << 17))
    freqs = np.fft.rfftfreq(1 << 17, 1.0 / sr)
    band = (freqs > BASE_HZ - STEP_HZ / 2) & (freqs < BASE_HZ + STEP_HZ * 60)
    f = freqs[band][int(np.argmax(spec[band]))]
    return int(round((f - BASE_HZ) / STEP_HZ))


def synth(script: list[tuple], gap: float = 0.9, overtalk_at: int | None = None) -> Recording:
    """Two channels (agent, customer): one tone burst per script line, a quiet noise floor."""
    rng = np.random.default_rng(7)
    t = gap
    spans = []
    for i, (speaker, secs, *_rest) in enumerate(script):
        start = t - (1.6 if overtalk_at is not None and i == overtalk_at else 0.0)
        spans.append((speaker, start, secs, i))
        t = start + secs + gap
    n = int((t + 0.5) * SR)
    chans = {sp: (rng.standard_normal(n) * 1e-4).astype(np.float32) for sp in ("agent", "customer")}
    for speaker, start, secs, i in spans:
        k = int(secs * SR)
        tt = np.arange(k) / SR
        f = _freq(i)
        env = np.minimum(1.0, np.minimum(tt, secs - tt) / 0.03)
        burst = 0.25 * np.sin(2 * np.pi * f * tt) + 0.06 * np.sin(2 * np.pi * 2 * f * tt)
        s = int(start * SR)
        chans[speaker][s : s + k] += (env * burst).astype(np.float32)
    return Recording(channels=(chans["agent"], chans["customer"]), sample_rate=SR)


def scripted_emotion(script: list[tuple]) -> FakeEmotion:
    """An emotion engine that reads the script line from the tone's pitch and says its label."""

    def say(audio: np.ndarray, sr: int, n: int) -> EmotionResult:
        _, _, _, valence, arousal, label = script[min(_index(audio, sr), len(script) - 1)]
        valence = 0.0 if valence is None else valence
        arousal = 0.0 if arousal is None else arousal
        return EmotionResult(
            label=label or "neutral",
            confidence=0.82,
            intensity=min(1.0, abs(arousal) + 0.2),
            arousal=arousal,
            valence=valence,
            uncertain=False,
        )

    return FakeEmotion(say)


def scripted_transcriber(script: list[tuple]) -> FakeTranscriber:
    """A recogniser that returns the script line's (already redacted) text."""
    return FakeTranscriber(lambda audio, sr: script[min(_index(audio, sr), len(script) - 1)][2])


def sample_config(
    db_path: Path, positions: tuple[str, ...] = ("pos-1", "pos-2", "pos-3", "pos-4")
) -> AppConfig:
    return config_from_dict(
        {
            "box": {"id": "sample-box", "site": "sample"},
            "paths": {"db": str(db_path)},
            "positions": [{"id": p} for p in positions],
        },
        base_dir=db_path.parent,
    )


def replay_call(
    db_path: str | Path,
    script_name: str,
    meta: CallMeta,
    speed: float = 0.0,
    leave_open: bool = False,
    overtalk_at: int | None = None,
) -> str:
    """Replay one scripted call through the real pipeline; returns the call id."""
    from appliance.ops.analysis import Session

    db_path = Path(db_path)
    script = SCRIPTS[script_name]
    rec = synth(script, overtalk_at=overtalk_at)
    session = Session(
        sample_config(db_path),
        db_path,
        engines(scripted_emotion(script), scripted_transcriber(script)),
    )
    try:
        if not leave_open:
            return session.replay(rec, ["agent", "customer"], meta, speed=speed, source="sample").id
        from appliance.capture.sources import WavReplaySource

        src = WavReplaySource(rec, ["agent", "customer"], speed=speed)
        call = session.pipeline.open_call(meta, src.sample_rate, source="sample")
        for chunk in src.chunks():
            session.pipeline.feed(call, chunk)
        deadline = time.monotonic() + 30
        while session.pipeline.queue_depth and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        return call.id
    finally:
        session.close(flush_timeout=0.1)


def fill_sample(db_path: str | Path) -> dict:
    """A few days of calls on four positions, one call still live; returns the call ids."""
    db_path = Path(db_path)
    ids: dict[str, list[str]] = {}
    plan = [
        ("CRM-1001", "retail", "pos-1", "support", "neutral", 4),
        ("CRM-1001", "retail", "pos-2", "support", "sour", 3),
        ("CRM-1001", "retail", "pos-1", "support", "sour", 2),
        ("CRM-2002", "retail", "pos-3", "sales", "happy", 3),
        ("CRM-2002", "retail", "pos-3", "sales", "happy", 2),
        ("CRM-2002", "retail", "pos-1", "sales", "happy", 1),
        ("CRM-3003", "business", "pos-2", "support", "neutral", 1),
        ("CRM-1001", "retail", "pos-1", "support", "upset", 0),
    ]
    shifts = {}
    for ref, seg, pos, ctype, script, days_ago in plan:
        cid = replay_call(
            db_path,
            script,
            CallMeta(position=pos, customer_ref=ref, call_type=ctype, segment=seg),
            overtalk_at=7 if script == "upset" else None,
        )
        ids.setdefault(ref, []).append(cid)
        shifts[cid] = days_ago * 86400 + 3600
    live = replay_call(
        db_path,
        "sour",
        CallMeta(position="pos-2", customer_ref="CRM-4004", call_type="support", segment="retail"),
        leave_open=True,
    )
    ids["live"] = [live]
    # spread the finished calls over the last days (the pipeline stamps them all "now")
    from appliance.store.connection import connect

    db = connect(db_path)
    try:
        for cid, shift in shifts.items():
            db.execute(
                "UPDATE calls SET started_at = started_at - ?, ended_at = ended_at - ? WHERE id = ?",
                [shift, shift, cid],
            )
            db.execute(
                "UPDATE alerts SET created_at = created_at - ? WHERE call_id = ?", [shift, cid]
            )
    finally:
        db.conn.close()
    return ids


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "sample.db")
    print(fill_sample(out))
