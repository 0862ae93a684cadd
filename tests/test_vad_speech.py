"""The learned speech check (Silero VAD v6 from the faster-whisper wheel): non-speech never becomes
an utterance, speech still does."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from appliance.capture.wav import read_wav
from appliance.config import VadConfig
from appliance.segment.vad import SILERO_SHA256, Segmenter, SpeechDetector, VadError, silero_path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEMO = ROOT / "appliance" / "data" / "demo_call.wav"


def _segments(x: np.ndarray, sr: int, cfg: VadConfig | None = None, chunk: int = 320):
    seg = Segmenter(sr, cfg or VadConfig())
    out = []
    for i in range(0, len(x), chunk):
        out += seg.push(x[i : i + chunk])
    return out + seg.flush(), seg


def _tones(sr: int, pattern: list[tuple[float, list[float]]], level: float = 0.3) -> np.ndarray:
    """Concatenated (duration, [frequencies]) pieces; an empty list is a pause with line noise."""
    rng = np.random.default_rng(0)
    parts = []
    for dur, freqs in pattern:
        t = np.arange(int(dur * sr)) / sr
        y = sum((np.sin(2 * np.pi * f * t) for f in freqs), np.zeros_like(t))
        parts.append(level * y / max(1, len(freqs)) + rng.normal(0, 1e-3, len(t)))
    return np.concatenate(parts).astype(np.float32)


@pytest.mark.parametrize("sr", [8000, 16000])
def test_ringback_dtmf_and_beeps_give_no_utterance(sr):
    ringback = [(2.0, [440, 480]), (4.0, [])] * 2  # North-American ring-back cadence
    dtmf = [(0.15, [697, 1209]), (0.1, []), (0.15, [770, 1336]), (0.1, []), (0.15, [941, 1477])]
    beeps = [(0.5, []), (0.4, [1000]), (1.0, []), (1.2, [1400]), (1.0, [])]
    x = _tones(sr, ringback + dtmf * 3 + beeps)
    energy, _ = _segments(x, sr, VadConfig(speech_model="energy"))
    assert len(energy) >= 3  # the level detector alone cuts them as utterances
    out, seg = _segments(x, sr)
    assert out == []
    assert seg.rejected == len(energy)


def test_speech_segments_pass_with_their_evidence():
    rec = read_wav(DEMO)
    for ch in rec.channels:
        energy, _ = _segments(ch, rec.sample_rate, VadConfig(speech_model="energy"))
        out, seg = _segments(ch, rec.sample_rate)
        assert len(out) == len(energy) > 5 and seg.rejected == 0
        assert all(s.speech_s is not None and s.speech_s > 0.5 for s in out)
        assert all(0.0 < s.speech_prob <= 1.0 for s in out)


def test_threshold_is_a_setting():
    rec = read_wav(DEMO)
    ch = rec.channels[1]
    strict, _ = _segments(ch, rec.sample_rate, VadConfig(min_voiced=30.0))
    assert strict == []  # no segment has 30 s of speech: the setting reaches the gate


def test_batched_probabilities_equal_streaming():
    det = SpeechDetector.shared()
    rec = read_wav(DEMO)
    x = rec.channels[1][: 3 * rec.sample_rate]
    whole = det.probabilities(x, rec.sample_rate)
    half = len(x) // 2 // 512 * 512
    assert len(whole) == len(x) // 512
    # the first chunks do not depend on what follows
    first = det.probabilities(x[:half], rec.sample_rate)
    assert np.allclose(first, whole[: len(first)], atol=1e-6)


def test_a_tampered_model_is_refused(tmp_path):
    bad = tmp_path / "silero_vad_v6.onnx"
    shutil.copy(silero_path(), bad)
    with bad.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(VadError, match="SHA-256"):
        SpeechDetector(bad)
    assert len(SILERO_SHA256) == 64


@pytest.mark.shared
@pytest.mark.skipif(not (SHARED / "nonspeech").exists(), reason="../shared data absent")
@pytest.mark.parametrize("name", ["hold_music_8k.wav", "hold_music_16k.wav"])
def test_hold_music_gives_no_utterance(name):
    rec = read_wav(SHARED / "nonspeech" / name)
    energy, _ = _segments(rec.channels[0], rec.sample_rate, VadConfig(speech_model="energy"))
    assert len(energy) >= 3  # what the box did before
    out, _ = _segments(rec.channels[0], rec.sample_rate)
    assert out == []


@pytest.mark.shared
@pytest.mark.skipif(not (SHARED / "realcalls").exists(), reason="../shared data absent")
def test_real_caller_keeps_its_speech():
    """Segments the level detector cuts on a real caller's line: every one with speech in it is
    kept (the dropped ones are line noise and the agent's echo, with no chunk above 0.5)."""
    rec = read_wav(SHARED / "realcalls" / "aws" / "Auto_Repairs_40_UTC_caller.wav")
    x, sr = rec.channels[0], rec.sample_rate
    energy, _ = _segments(x, sr, VadConfig(speech_model="energy"))
    out, _ = _segments(x, sr)
    det = SpeechDetector.shared()
    speechy = [s for s in energy if np.sum(det.probabilities(s.audio, sr) >= 0.5) >= 2]
    assert {s.start for s in out} == {s.start for s in speechy}
    assert len(out) >= 30


def test_known_phrases_over_non_speech_are_dropped():
    from appliance.segment.vad import clean_transcript

    assert clean_transcript("Thank you.", 0.1) == ""
    assert clean_transcript(" you", 0.2) == ""
    assert clean_transcript("Thanks for watching!", 0.05) == ""
    assert clean_transcript("Thank you.", 0.8) == "Thank you."  # a caller's real thanks
    assert clean_transcript("My car will not start", 0.1) == "My car will not start"
    assert clean_transcript("Thank you.", None) == "Thank you."  # energy VAD: unknown
