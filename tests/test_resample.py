"""Polyphase resampler accuracy, anti-aliasing, and G.711 mu-law."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.capture.resample import mulaw_decode, mulaw_encode, resample, telephone_channel

PAIRS = [
    (8000, 16000),
    (16000, 8000),
    (44100, 16000),
    (48000, 16000),
    (16000, 44100),
    (16000, 48000),
    (48000, 8000),
    (44100, 8000),
]


def tone(freq: float, sr: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(("sr_in", "sr_out"), PAIRS)
def test_tone_is_preserved(sr_in: int, sr_out: int) -> None:
    x = tone(1000.0, sr_in)
    y = resample(x, sr_in, sr_out)
    assert y.dtype == np.float32
    assert len(y) == -(-len(x) * sr_out // sr_in)
    ref = tone(1000.0, sr_out, len(y) / sr_out)[: len(y)]
    edge = sr_out // 50  # filter start-up at the signal edges
    assert np.max(np.abs(y[edge:-edge] - ref[edge:-edge])) < 1e-3


@pytest.mark.parametrize(("sr_in", "sr_out"), [p for p in PAIRS if p[1] < p[0]])
def test_aliasing_is_suppressed(sr_in: int, sr_out: int) -> None:
    # A tone 25% above the new Nyquist must vanish, not fold back into the band.
    x = tone(0.5 * sr_out * 1.25, sr_in)
    y = resample(x, sr_in, sr_out)
    edge = sr_out // 50
    rms = float(np.sqrt(np.mean(y[edge:-edge] ** 2)))
    assert 20 * np.log10(rms / (0.5 / np.sqrt(2))) < -60


def test_identity_empty_and_errors() -> None:
    x = tone(440, 16000, 0.1)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)
    assert resample(np.zeros(0, np.float32), 8000, 16000).shape == (0,)
    with pytest.raises(ValueError):
        resample(np.zeros((2, 10), np.float32), 8000, 16000)
    with pytest.raises(ValueError):
        resample(x, 0, 16000)


def test_round_trip_8k_16k() -> None:
    x = tone(300.0, 8000) + tone(2500.0, 8000, amp=0.2)
    back = resample(resample(x, 8000, 16000), 16000, 8000)
    assert np.max(np.abs(back[200:-200] - x[200:-200])) < 2e-3


def test_mulaw_reference_codes() -> None:
    # G.711: silence is 0xFF, full-scale positive 0x80, full-scale negative 0x00.
    codes = mulaw_encode(np.array([0.0, 1.0, -1.0], np.float32))
    assert codes.dtype == np.uint8
    assert codes.tolist() == [0xFF, 0x80, 0x00]
    assert mulaw_decode(np.array([0xFF], np.uint8))[0] == 0.0


def test_mulaw_round_trip_error_is_relative() -> None:
    x = np.random.default_rng(1).uniform(-1, 1, 20000).astype(np.float32)
    y = mulaw_decode(mulaw_encode(x))
    assert y.dtype == np.float32
    err = np.abs(y - x)
    # ~8-bit logarithmic quantisation: error scales with amplitude (<= ~3.2% + tiny floor)
    assert np.all(err <= 0.035 * np.abs(x) + 3e-4)
    # every one of the 256 codes decodes and re-encodes to itself
    codes = np.arange(256, dtype=np.uint8)
    decoded = mulaw_decode(codes)
    again = mulaw_encode(decoded)
    # 0x7F and 0xFF are both zero (+0 / -0); the rest are exact
    assert np.array_equal(np.delete(again, [0x7F]), np.delete(codes, [0x7F]))


def test_telephone_channel() -> None:
    x = tone(1000.0, 16000)
    y = telephone_channel(x, 16000)
    assert y.dtype == np.float32
    assert len(y) == 8000
    ref = tone(1000.0, 8000)
    assert np.max(np.abs(y[200:-200] - ref[200:-200])) < 0.03
