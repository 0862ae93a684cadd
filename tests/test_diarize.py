"""Two speakers on one channel: diarization error on mono mixes of stereo calls (the stereo
channels give the truth), a mono recording through `analyze --channels mixed` with the real
models, a mono position's source, and the config that declares one.

The error is frame-level (10 ms) over the speech of the truth, no collar: a frame of one
speaker given to the other counts once, a frame where both speak counts once (one of them is
always missed: the splitter gives a stretch to one speaker). Speech activity of the truth is the
per-channel level 12 dB above its floor."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED, needs_model, needs_shared
from support.fakes import ScriptedSource
from support.voip import demo_legs

from appliance.capture.wav import read_wav
from appliance.config import ConfigError, DiarizeConfig, config_from_dict
from appliance.diarize.split import DiarizedSource, MonoSplitter

AWS = SHARED / "realcalls" / "aws" / "Auto_Repairs_40_UTC_stereo_L-agent_R-caller.wav"


def _active(x: np.ndarray, sr: int) -> np.ndarray:
    hop = sr // 100
    n = len(x) // hop
    db = 10 * np.log10(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-10)
    return db > max(np.percentile(db, 10) + 12, -50)


def diarization_error(agent: np.ndarray, customer: np.ndarray, sr: int, **kw) -> float:
    ta, tc = _active(agent, sr), _active(customer, sr)
    sp = MonoSplitter(sr, **kw)
    mix, hop = agent + customer, sr // 50
    for i in range(0, len(mix), hop):
        sp.push(mix[i : i + hop])
    sp.flush()
    lab = np.full(len(ta), -1)
    for s, e, who in sp.labels:
        lab[int(round(s * 100)) : int(round(e * 100))] = 0 if who == "agent" else 1
    single, both = ta ^ tc, ta & tc
    err = ((lab != np.where(ta, 0, 1)) & single).sum() + both.sum()
    return float(err / (single.sum() + 2 * both.sum()))


def test_demo_call_mixed_to_mono_16k_and_through_the_telephone_band():
    rec = read_wav("appliance/data/demo_call.wav")
    wide = diarization_error(*rec.channels, rec.sample_rate)
    phone = diarization_error(*demo_legs(None, 8000), 8000)
    print(f"demo call: diarization error {wide:.3f} (16 kHz), {phone:.3f} (8 kHz)")
    assert wide < 0.06 and phone < 0.07


@needs_shared
@pytest.mark.skipif(not AWS.exists(), reason="AWS sample call absent")
def test_real_call_mixed_to_mono_first_speaker_and_enrolment():
    rec = read_wav(AWS)
    agent, customer = rec.channels
    first = diarization_error(agent, customer, rec.sample_rate)
    # enrolment: 60 s of the agent's own channel from the end of the call (an agent enrols once)
    enrol = agent[-60 * rec.sample_rate :]
    enrolled = diarization_error(agent, customer, rec.sample_rate, enrolment=enrol)
    print(f"AWS call 40 (245 s, 8 kHz): first speaker {first:.3f}, enrolment {enrolled:.3f}")
    assert first < 0.10 and enrolled < 0.16


def test_swapped_channels_swap_the_answer_and_silence_gives_nothing():
    agent, customer = demo_legs(None)
    # truth with the roles swapped: whoever speaks first is taken as the agent, so without an
    # enrolment every frame is wrong (the rule's limit) ...
    assert diarization_error(customer, agent, 8000) > 0.9
    # ... and an enrolment of the (swapped) agent's voice puts it right
    enrolled = diarization_error(customer, agent, 8000, enrolment=customer[-20 * 8000 :])
    print(f"demo call, roles swapped: enrolment {enrolled:.3f}")
    assert enrolled < 0.15
    sp = MonoSplitter(8000)
    out = sp.push(np.zeros(8000, np.float32)) + sp.flush()
    assert sum(len(o["agent"]) for o in out) == 8000 and all(not o["customer"].any() for o in out)
    with pytest.raises(ValueError, match="no speech"):
        MonoSplitter(8000, enrolment=np.zeros(16000, np.float32))


def test_mono_position_source_splits_and_restarts_after_a_silent_gap():
    agent, customer = demo_legs(22, 16000)
    mono = np.concatenate([agent + customer, np.zeros(16000 * 3, np.float32)])
    src = ScriptedSource(customer=mono)
    ds = DiarizedSource(src, config_from_dict({}).vad, DiarizeConfig(), None, reset_after_s=2.0)
    got = {"agent": [], "customer": []}
    for chunk in ds.chunks():
        for k in got:
            got[k].append(chunk[k])
        if sum(len(x) for x in got["agent"]) >= len(mono) + 16000:
            break
    ds.close()
    a, c = (np.concatenate(got[k]) for k in ("agent", "customer"))
    assert np.allclose(a + c, np.pad(mono, (0, len(a) - len(mono)))[: len(a)], atol=1e-6)
    cust_share = np.sum(c[: len(customer)] ** 2) / np.sum(customer**2)
    assert cust_share > 0.8  # most of the customer's energy went to the customer channel
    assert ds.splitter.labels == [] or ds.splitter._all == []  # restarted after the gap


def test_mono_position_config():
    cfg = config_from_dict(
        {
            "positions": [
                {
                    "id": "p1",
                    "mono": True,
                    "agent_enrolment": "agent.wav",
                    "channels": {"agent": 0, "customer": 0},
                }
            ]
        }  # fmt: skip
    )
    assert cfg.positions[0].mono
    with pytest.raises(ConfigError, match="positions\\[0\\].channels.customer"):
        config_from_dict({"positions": [{"id": "p1", "channels": {"agent": 0, "customer": 0}}]})


@needs_model
def test_analyze_mixed_mono_recording_with_the_real_models(tmp_path):
    from appliance.capture.wav import write_wav
    from appliance.ops.analysis import analyze_file
    from appliance.ops.engines import load_engines

    rec = read_wav("appliance/data/demo_call.wav")
    path = tmp_path / "mono.wav"
    write_wav(path, [rec.channels[0] + rec.channels[1]], rec.sample_rate)
    cfg = config_from_dict({"stt": {"engine": "none"}, "retention": {"min_free_mb": 0.0}})
    doc = analyze_file(path, cfg, load_engines(cfg, with_stt=False), channels="mixed")
    utts = doc["utterances"]
    cust = [u for u in utts if u["speaker"] == "customer"]
    truth = _active(rec.channels[1], rec.sample_rate)
    on = [u for u in cust if truth[int(u["start"] * 100) : int(u["end"] * 100)].mean() > 0.3]
    assert len(cust) >= 6 and len(on) >= 0.8 * len(cust)
    assert all(u["emotion"] is None for u in utts if u["speaker"] == "agent")
    assert sum(u["emotion"] is not None for u in cust) >= 6


def test_daemon_mono_position_scores_the_customer_stretches_only(tmp_path):
    """`positions[].mono`: the daemon diarizes the position's one channel before the pipeline;
    the emotion engine sees audio of the customer's turns, not the agent's."""
    from support import fakes
    from test_daemon import Running, _opts, _rows, _wait

    rec = read_wav("appliance/data/demo_call.wav")
    agent, customer = rec.channels
    cfg = config_from_dict(
        {
            "paths": {"db": str(tmp_path / "a.db")},
            "stt": {"engine": "none"},
            "retention": {"min_free_mb": 0.0},
            "positions": [
                {
                    "id": "pos-1",
                    "device": "fake",
                    "mono": True,
                    "channels": {"agent": 0, "customer": 0},
                }
            ],
        },  # fmt: skip
        base_dir=tmp_path,
    )
    emotion = fakes.FakeEmotion()
    sources = []

    def factory(pos):
        sources.append(ScriptedSource(customer=(agent + customer) if not sources else None))
        return sources[-1]

    db = tmp_path / "a.db"
    with Running(cfg, factory, _opts(silence_end_s=3.0), fakes.engines(emotion)):
        assert _wait(lambda: _rows(db, "SELECT state FROM calls") == [("ended",)], 60)
    spk = dict(_rows(db, "SELECT speaker, COUNT(*) FROM utterances GROUP BY speaker"))
    assert spk.get("agent", 0) >= 5 and spk.get("customer", 0) >= 6
    starts = _rows(db, "SELECT start, end FROM utterances WHERE speaker = 'customer'")
    assert len(emotion.seen) == sum(1 for s, e in starts if e - s >= 0.6)
    # what reached emotion is the customer's speech (its energy), not the agent's
    c_energy = np.sum(customer**2)
    fed = sum(float(np.sum(x**2)) for x in emotion.seen)
    assert 0.6 * c_energy < fed < 1.3 * c_energy
