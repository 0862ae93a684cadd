import numpy as np
import pytest

from appliance.config import VadConfig
from appliance.segment.vad import Segmenter

# The level detector alone (these tests cut synthetic tone bursts, which the learned speech check
# rightly calls non-speech: see test_vad_speech.py).
ENERGY = VadConfig(speech_model="energy")


def bursts(sr, spans, total, noise_db=-60.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 10 ** (noise_db / 20), int(total * sr)).astype(np.float32)
    for a, b in spans:
        t = np.arange(int((b - a) * sr)) / sr
        x[int(a * sr) : int(a * sr) + len(t)] += (
            0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
        ).astype(np.float32)
    return x


@pytest.mark.parametrize("sr", [8000, 16000])
@pytest.mark.parametrize("chunk", [160, 320, 777])
def test_segments_found_with_preroll_and_hangover(sr, chunk):
    spans = [(1.0, 2.5), (4.0, 4.8), (6.0, 8.0)]
    x = bursts(sr, spans, 10.0)
    seg = Segmenter(sr, ENERGY)
    out = []
    for i in range(0, len(x), chunk):
        out += seg.push(x[i : i + chunk])
    out += seg.flush()
    assert len(out) == 3
    for s, (a, b) in zip(out, spans, strict=True):
        assert a - 0.25 <= s.start <= a  # pre-roll included
        assert b <= s.end <= b + 0.2  # short tail kept, hangover silence dropped
        assert abs(len(s.audio) / sr - (s.end - s.start)) < 0.011


def test_short_clicks_and_silence_are_not_speech():
    sr = 16000
    x = bursts(sr, [(1.0, 1.02), (3.0, 3.15)], 5.0)
    seg = Segmenter(sr, ENERGY)
    assert seg.push(x) + seg.flush() == []


def test_long_speech_is_cut_at_max_utterance():
    sr = 8000
    x = bursts(sr, [(0.5, 20.0)], 21.0)
    seg = Segmenter(sr, VadConfig(max_utterance=5.0, speech_model="energy"))
    out = seg.push(x) + seg.flush()
    assert 4 <= len(out) <= 6
    assert all(s.end - s.start <= 5.01 for s in out)
    assert all(s.end - s.start >= 5.0 * 2 / 3 - 0.01 for s in out[:-1])  # cut in the last third
    for a, b in zip(out, out[1:], strict=False):
        assert abs(a.end - b.start) < 0.011  # contiguous: nothing lost at a cut
    assert abs(sum(len(s.audio) for s in out) / sr - (out[-1].end - out[0].start)) < 0.011


def test_long_speech_is_cut_in_its_quietest_moment_not_mid_word():
    # 0.15 s pauses (quieter than speech, above the noise: a breath between words) at 4.1 s and
    # 8.6 s: the cuts land in them, not at the 5 s limit inside a word
    sr = 16000
    x = bursts(sr, [(0.5, 4.1), (4.25, 8.6), (8.75, 14.0)], 15.0, noise_db=-60.0)
    seg = Segmenter(sr, VadConfig(max_utterance=5.0, hangover=0.5, speech_model="energy"))
    out = seg.push(x) + seg.flush()
    assert 4.1 <= out[0].end <= 4.25
    assert 8.6 <= out[1].end <= 8.75
    assert out[1].start == out[0].end


def test_noise_floor_adapts_to_a_noisy_line():
    sr = 16000
    x = bursts(sr, [(3.0, 4.0)], 6.0, noise_db=-35.0)
    seg = Segmenter(sr, ENERGY)
    out = seg.push(x) + seg.flush()
    assert len(out) == 1 and 2.7 < out[0].start < 3.05
