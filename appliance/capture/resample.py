"""Sample-rate conversion and G.711 mu-law, in plain numpy.

Why our own: the box must not pull scipy/librosa into the runtime just to turn 8 kHz telephone
audio into the 16 kHz that Whisper wants, and the conversions we need are a handful of fixed
rational ratios (8k, 16k, 44.1k, 48k). A Kaiser-windowed sinc evaluated as a polyphase filter is
exact for rational ratios, has ~80 dB stop-band attenuation and costs only the taps that are
actually used (no zero-stuffed intermediate signal).

The mu-law helpers implement ITU-T G.711 (segmented, bias 0x84) so tests and benchmarks can
simulate a real telephone channel: `telephone_channel()` = resample to 8 kHz + mu-law round trip.
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np

__all__ = ["StreamResampler", "resample", "mulaw_encode", "mulaw_decode", "telephone_channel"]

#: Zero crossings of the sinc on each side, measured at the lower of the two rates. 16 gives a
#: transition band of a few percent of Nyquist; more only costs CPU.
_ZERO_CROSSINGS = 16
#: Pass-band edge as a fraction of the lower Nyquist frequency (anti-aliasing margin).
_ROLLOFF = 0.94
#: Kaiser beta ~ 8.6 -> about 80-90 dB stop-band attenuation.
_KAISER_BETA = 8.6
#: Outputs computed per block, so memory stays bounded on long signals.
_BLOCK = 1 << 16


@lru_cache(maxsize=32)
def _polyphase(up: int, down: int) -> tuple[np.ndarray, int]:
    """Polyphase bank [up, taps] of the low-pass filter for ratio up/down, and its centre.

    The prototype runs at the virtual rate `sr_in * up`; its cut-off is the lower Nyquist.
    Cached because the same few ratios recur for every utterance.
    """
    ratio = max(up, down)
    cutoff = _ROLLOFF / ratio  # relative to the virtual Nyquist
    half = _ZERO_CROSSINGS * ratio
    n = np.arange(-half, half + 1, dtype=np.float64)
    h = cutoff * np.sinc(cutoff * n) * np.kaiser(2 * half + 1, _KAISER_BETA)
    h *= up  # compensate the energy lost by the (virtual) zero stuffing
    taps = -(-len(h) // up)
    padded = np.zeros(taps * up, dtype=np.float64)
    padded[: len(h)] = h
    # bank[p, j] = h[p + j * up]
    bank = padded.reshape(taps, up).T.copy()
    return bank, half


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a 1-D signal from `sr_in` to `sr_out` Hz; returns float32.

    Output length is ceil(len(x) * sr_out / sr_in); sample n of the output is aligned with time
    n / sr_out (zero-phase filter, no delay). Any pair of positive integer rates works; the
    common ones (8k <-> 16k, 44.1k/48k -> 16k/8k) are what the pipeline uses.
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"resample expects a 1-D signal, got shape {x.shape}")
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    if sr_in == sr_out:
        return x.astype(np.float32, copy=True)
    if len(x) == 0:
        return np.zeros(0, dtype=np.float32)
    g = gcd(sr_in, sr_out)
    up, down = sr_out // g, sr_in // g
    bank, centre = _polyphase(up, down)
    taps = bank.shape[1]
    n_in = len(x)
    n_out = -(-n_in * up // down)
    # Input index window: y[n] = sum_j bank[p, j] * x[i - j], u = n*down + centre, i = u // up.
    left = taps - 1
    right = centre // up + down + 2
    xp = np.zeros(left + n_in + right, dtype=np.float64)
    xp[left : left + n_in] = x
    windows = np.lib.stride_tricks.sliding_window_view(xp, taps)
    rev_bank = bank[:, ::-1]
    y = np.empty(n_out, dtype=np.float64)
    # Outputs n = r + up*q share phase p_r and advance by `down` input samples per q.
    for r in range(min(up, n_out)):
        u0 = r * down + centre
        base, phase = divmod(u0, up)
        count = len(range(r, n_out, up))
        coeffs = rev_bank[phase]
        for q0 in range(0, count, _BLOCK):
            q1 = min(count, q0 + _BLOCK)
            start = base + q0 * down
            rows = windows[start : start + (q1 - q0 - 1) * down + 1 : down]
            y[r + q0 * up : r + q1 * up : up] = rows @ coeffs
    return y.astype(np.float32)


class StreamResampler:
    """`resample` over a signal that arrives in pieces, with the same output as resampling the
    whole signal at once (so a recording can be decoded and resampled a block at a time).

    Each piece is filtered with `context` input samples of its neighbours on both sides (more
    than the filter reaches), so `push` returns the output up to `context` samples before the
    end of what it was given; `flush` returns the rest.
    """

    def __init__(self, sr_in: int, sr_out: int):
        g = gcd(sr_in, sr_out)
        self.sr_in, self.sr_out = sr_in, sr_out
        self.up, self.down = sr_out // g, sr_in // g
        bank, centre = _polyphase(self.up, self.down)
        reach = bank.shape[1] + centre // self.up + self.down + 2
        # a multiple of `down`, so every piece starts on an output sample
        self.context = self.down * -(-reach // self.down)
        self._left = np.zeros(self.context, np.float32)
        self._buf = np.zeros(0, np.float32)

    def _run(self, seg: np.ndarray, n_out: int) -> np.ndarray:
        y = resample(seg, self.sr_in, self.sr_out)
        off = self.context * self.up // self.down
        return y[off : off + n_out]

    def push(self, x: np.ndarray) -> np.ndarray:
        self._buf = np.concatenate([self._buf, np.asarray(x, np.float32)])
        n = (len(self._buf) - self.context) // self.down * self.down
        if n <= 0:
            return np.zeros(0, np.float32)
        seg = np.concatenate([self._left, self._buf[: n + self.context]])
        y = self._run(seg, n * self.up // self.down)
        self._left = seg[n : n + self.context].copy()
        self._buf = self._buf[n:]
        return y

    def flush(self) -> np.ndarray:
        n = len(self._buf)
        if n == 0:
            return np.zeros(0, np.float32)
        seg = np.concatenate([self._left, self._buf])
        y = self._run(seg, -(-n * self.up // self.down))
        self._buf = np.zeros(0, np.float32)
        return y


# --- G.711 mu-law ---------------------------------------------------------------------------

_BIAS = 0x84
_CLIP = 32635


def mulaw_encode(x: np.ndarray) -> np.ndarray:
    """Encode float samples in [-1, 1] to G.711 mu-law bytes (uint8), as a telephone codec does."""
    pcm = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(
        np.int32
    )
    sign = np.where(pcm < 0, 0x80, 0).astype(np.int32)
    mag = np.minimum(np.abs(pcm), _CLIP) + _BIAS
    # exponent = index of the highest set bit of (mag >> 7), 0..7
    top = mag >> 7
    exponent = np.zeros_like(mag)
    for e in range(1, 8):
        exponent[top >= (1 << e)] = e
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


def mulaw_decode(b: np.ndarray) -> np.ndarray:
    """Decode G.711 mu-law bytes to float32 samples in [-1, 1]."""
    u = ~np.asarray(b, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    mag = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    pcm = np.where(sign != 0, -mag, mag)
    return (pcm / 32768.0).astype(np.float32)


def telephone_channel(x: np.ndarray, sr: int) -> np.ndarray:
    """Simulate a narrow-band call leg: resample to 8 kHz, mu-law encode and decode.

    Returns float32 at 8 kHz. Used by tests and `bench_stt` to measure STT on telephone audio.
    """
    return mulaw_decode(mulaw_encode(resample(x, sr, 8000)))
