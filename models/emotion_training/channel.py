"""Channel simulation for emotion training: what the box hears (training-time only, needs scipy).

- `headset16`: 16 kHz headset audio: random gain (-15..+6 dB), occasional slow gain ride (AGC),
  low-level noise (SNR 25-50 dB), clipping at full scale.
- `phone8`: telephone: band-limit 300-3400 Hz (edges jittered), resample to 8 kHz, random gain,
  line noise (white + mains hum, SNR 20-45 dB), G.711 mu-law 8-bit round trip.
- `speed16` / `speed8` (and `b` copies): the same after a playback-speed change of 0.90-1.10, one factor
  per speaker and variant (pitch and formants shift together): extra pseudo-speakers.
"""

from __future__ import annotations

import numpy as np
from scipy import signal


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """The project's resampler when it exists (`appliance.capture.resample`), else a polyphase one."""
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float32)
    try:
        from appliance.capture.resample import resample as _res  # written by another engineer

        return np.asarray(_res(x, sr_in, sr_out), dtype=np.float32)
    except ImportError:
        from math import gcd

        g = gcd(sr_in, sr_out)
        return signal.resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


def mulaw_roundtrip(x: np.ndarray, mu: int = 255) -> np.ndarray:
    """G.711 mu-law encode + decode (the project's codec when present, else continuous mu-law, 8 bit)."""
    x = np.clip(x, -1.0, 1.0)
    try:
        from appliance.capture.resample import mulaw_decode, mulaw_encode

        return np.asarray(mulaw_decode(mulaw_encode(x.astype(np.float32))), dtype=np.float32)
    except ImportError:
        pass
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    q = np.round((y + 1.0) * 127.5) / 127.5 - 1.0
    return (np.sign(q) * ((1.0 + mu) ** np.abs(q) - 1.0) / mu).astype(np.float32)


def _gain(x: np.ndarray, rng: np.random.Generator, lo_db: float, hi_db: float) -> np.ndarray:
    g = 10 ** (rng.uniform(lo_db, hi_db) / 20)
    # normalise the clip's peak to about -3 dBFS first, so gains are relative to a sane level
    peak = float(np.max(np.abs(x))) or 1.0
    x = x * (0.7 / peak) * g
    if rng.random() < 0.3:  # slow gain ride (AGC) over the utterance
        t = np.linspace(0, 1, len(x))
        ride = 10 ** (rng.uniform(-6, 6) * (t - 0.5) / 20)
        x = x * ride
    return x


def _noise(
    x: np.ndarray, sr: int, rng: np.random.Generator, snr_lo: float, snr_hi: float, hum: bool
) -> np.ndarray:
    p_sig = float(np.mean(x**2)) + 1e-12
    snr = rng.uniform(snr_lo, snr_hi)
    n = rng.standard_normal(len(x))
    if rng.random() < 0.5:  # pinkish
        n = signal.lfilter([1.0], [1.0, -0.9], n)
    if hum and rng.random() < 0.5:
        f = rng.choice([50.0, 60.0])
        t = np.arange(len(x)) / sr
        n = (
            n / (np.std(n) + 1e-12)
            + 0.7 * np.sin(2 * np.pi * f * t)
            + 0.3 * np.sin(6 * np.pi * f * t)
        )
    n = n / (np.sqrt(np.mean(n**2)) + 1e-12) * np.sqrt(p_sig / 10 ** (snr / 10))
    return x + n


def headset16(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Headset-style gain and noise at the input rate (16 kHz for RAVDESS)."""
    x = _gain(np.asarray(x, dtype=np.float64), rng, -15, 6)
    x = _noise(x, sr, rng, 25, 50, hum=False)
    return np.clip(x, -1, 1).astype(np.float32)


def phone8(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Telephone channel; output is always 8 kHz."""
    lo = rng.uniform(250, 350)
    hi = rng.uniform(3200, min(3500, 0.45 * sr))
    sos = signal.butter(4, [lo, hi], btype="bandpass", fs=sr, output="sos")
    x = signal.sosfilt(sos, np.asarray(x, dtype=np.float64))
    x = resample(x.astype(np.float32), sr, 8000).astype(np.float64)
    x = _gain(x, rng, -18, 3)
    x = _noise(x, 8000, rng, 20, 45, hum=True)
    return mulaw_roundtrip(x)


SPEED_FACTORS = ((9, 10), (23, 25), (19, 20), (21, 20), (27, 25), (11, 10))  # 0.90 .. 1.10


def speed_perturb(x: np.ndarray, factor: tuple[int, int]) -> np.ndarray:
    """Play the recording `p/q` times faster (pitch and formants scale by p/q): a cheap new "speaker"."""
    p, q = factor
    return signal.resample_poly(np.asarray(x, dtype=np.float64), q, p).astype(np.float32)


def vtlp_headset16(
    x: np.ndarray, sr: int, rng: np.random.Generator, spk_rng: np.random.Generator
) -> np.ndarray:
    f = SPEED_FACTORS[int(spk_rng.integers(len(SPEED_FACTORS)))]
    return headset16(speed_perturb(x, f), sr, rng)


def vtlp_phone8(
    x: np.ndarray, sr: int, rng: np.random.Generator, spk_rng: np.random.Generator
) -> np.ndarray:
    f = SPEED_FACTORS[int(spk_rng.integers(len(SPEED_FACTORS)))]
    return phone8(speed_perturb(x, f), sr, rng)


VARIANTS = {
    # name: (sample rate, function or None for the clip as recorded, seed offset)
    "clean16": (16000, None, 0),
    "head16a": (16000, headset16, 1),
    "head16b": (16000, headset16, 2),
    "phone8a": (8000, phone8, 3),
    "phone8b": (8000, phone8, 4),
    "phone8c": (8000, phone8, 5),
    # speed-perturbed (one factor per speaker, so a pseudo-call sounds like one new speaker)
    "speed16": (16000, vtlp_headset16, 6),
    "speed8": (8000, vtlp_phone8, 7),
    "speed16b": (16000, vtlp_headset16, 8),
    "speed8b": (8000, vtlp_phone8, 9),
}
EVAL_VARIANTS = {"16k": "clean16", "phone": "phone8a"}


def make_variant(
    x: np.ndarray, sr_in: int, variant: str, seed: int, speaker_seed: int = 0
) -> tuple[np.ndarray, int]:
    """Audio of one training variant. 16 kHz variants of an 8 kHz recording stay at 8 kHz."""
    sr, fn, off = VARIANTS[variant]
    if fn is None:
        return np.asarray(x, dtype=np.float32), sr_in
    rng = np.random.default_rng([seed, off])
    if fn in (vtlp_headset16, vtlp_phone8):
        y = fn(x, sr_in, rng, np.random.default_rng([speaker_seed, off]))
    else:
        y = fn(x, sr_in, rng)
    return y, (8000 if fn in (phone8, vtlp_phone8) else sr_in)
