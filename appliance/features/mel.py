"""Log-mel spectrogram, MFCC and the streaming log-mel frontend."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

from ._common import FeatureError, check_audio, check_rate, frame_spec, register
from ._fft import JIT, cfft_lanes, rfft_power_lanes, rfft_tables
from ._melkern import (
    S_BUF,
    S_COEF,
    S_ERR,
    S_OUT,
    S_SEEN,
    logmel_lanes,
    pack_tables,
    scratch_size,
    stream_step,
)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa ``htk=False``): linear below 1 kHz, log above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(
        f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, mels
    )


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@lru_cache(maxsize=8)
def mel_filterbank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-normalised triangular filters, shape ``[n_mels, n_fft//2+1]`` (float32).

    Same construction as ``librosa.filters.mel(sr, n_fft, n_mels, fmin=0, fmax=sr/2,
    htk=False, norm='slaney')``; written out so librosa is not a runtime dependency.
    """
    fftfreqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    weights = np.zeros((n_mels, fftfreqs.size))
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, None]
    weights.flags.writeable = False
    return weights.astype(np.float32)


@lru_cache(maxsize=4)
def fft_window(sr: int) -> np.ndarray:
    """Periodic Hann of 25 ms zero-padded (centred) to the FFT size, like librosa's stft."""
    spec = frame_spec(sr)
    n = np.arange(spec.win)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / spec.win)
    w = np.zeros(spec.n_fft)
    off = (spec.n_fft - spec.win) // 2
    w[off : off + spec.win] = hann
    return w.astype(np.float32)


LANES = 64  # frames transformed together in the batch path (see _fft)


@register
@njit(**JIT)
def _pack(xp, start, f0, nl, hop, win, rev, re, im):  # pragma: no cover - jitted
    """Window frames f0..f0+nl-1 into lanes, even/odd samples as re/im in bit-reversed order.

    Unused lanes repeat the last frame (their results are discarded).
    """
    lanes = re.shape[1]
    for n in range(rev.size):
        i2 = 2 * rev[n]
        w0 = win[i2]
        w1 = win[i2 + 1]
        for g in range(lanes):
            s = start + (f0 + min(g, nl - 1)) * hop + i2
            re[n, g] = xp[s] * w0
            im[n, g] = xp[s + 1] * w1


@register
@njit(**JIT)
def _spectrum_frames(
    xp, start, n_frames, hop, win, rev, twr, twi, pwr, pwi, out
):  # pragma: no cover
    """Power spectra of ``n_frames`` frames of ``xp`` starting at ``start`` into ``out``."""
    m = rev.size
    re = np.empty((m, LANES), dtype=np.float32)
    im = np.empty((m, LANES), dtype=np.float32)
    p = np.empty((m + 1, LANES), dtype=np.float32)
    for f0 in range(0, n_frames, LANES):
        nl = min(LANES, n_frames - f0)
        _pack(xp, start, f0, nl, hop, win, rev, re, im)
        cfft_lanes(re, im, twr, twi)
        rfft_power_lanes(re, im, pwr, pwi, p)
        for g in range(nl):
            for k in range(m + 1):
                out[f0 + g, k] = p[k, g]


class _Tables:
    """float32 kernel tables for one (sr, n_mels)."""

    def __init__(self, sr: int, n_mels: int) -> None:
        spec = frame_spec(sr)
        rev, twr, twi, pwr, pwi = rfft_tables(spec.n_fft)
        f32 = np.float32
        self.fft = (
            fft_window(sr),
            rev,
            twr.astype(f32),
            twi.astype(f32),
            pwr.astype(f32),
            pwi.astype(f32),
        )
        fb = mel_filterbank(sr, spec.n_fft, n_mels)
        # Packed tables of the log-mel kernel (batch and stream; see _melkern).
        self.ftab, self.itab = pack_tables(spec.n_fft, spec.hop, fft_window(sr), fb)


@lru_cache(maxsize=16)
def _tables(sr: int, n_mels: int) -> _Tables:
    return _Tables(sr, n_mels)


def _pad_centre(x: np.ndarray, pad: int) -> np.ndarray:
    xp = np.zeros(x.size + 2 * pad, dtype=np.float32)
    xp[pad : pad + x.size] = x
    return xp


def power_spectrogram(x: np.ndarray, sr: int) -> np.ndarray:
    """|STFT|^2 of validated float32 audio, shape ``[frames, n_fft//2+1]`` (float32)."""
    spec = frame_spec(sr)
    n = spec.n_frames(x.size)
    out = np.empty((n, spec.n_bins), dtype=np.float32)
    _spectrum_frames(_pad_centre(x, spec.pad), 0, n, spec.hop, *_tables(sr, 40).fft, out)
    return out


def _check_n_mels(n_mels: int, sr: int) -> int:
    if (
        isinstance(n_mels, bool)
        or not isinstance(n_mels, (int, np.integer))
        or not 1 <= n_mels <= 128
    ):
        raise FeatureError(f"n_mels must be an int in 1..128, got {n_mels!r}")
    return int(n_mels)


def _apply_preemphasis(x: np.ndarray, coef: float, prev: float = 0.0) -> np.ndarray:
    """y[n] = x[n] - coef * x[n-1] (x[-1] = ``prev``, 0 for a fresh signal)."""
    if coef == 0.0:
        return x
    y = np.empty_like(x)
    y[0] = x[0] - np.float32(coef) * np.float32(prev)
    y[1:] = x[1:] - np.float32(coef) * x[:-1]
    return y


def _check_preemphasis(preemphasis: float) -> float:
    p = float(preemphasis)
    if not 0.0 <= p < 1.0:
        raise FeatureError(f"preemphasis must be in [0, 1), got {preemphasis!r}")
    return p


def log_mel(x: np.ndarray, sr: int, n_mels: int = 40, preemphasis: float = 0.0) -> np.ndarray:
    """Natural-log mel energies, float32 ``[1 + len(x)//hop, n_mels]``.

    25 ms periodic Hann, 10 ms hop, 512-point FFT at 16 kHz (256 at 8 kHz), frames centred
    with zero padding (librosa ``center=True, pad_mode='constant'``), power spectrum, Slaney
    mel filters from 0 Hz to sr/2, then ``log(mel + 1e-10)``. Equals
    ``np.log(librosa.feature.melspectrogram(y=x, sr=sr, n_fft=..., hop_length=...,
    win_length=..., n_mels=n_mels, power=2) + 1e-10).T`` up to float32 rounding.
    ``preemphasis`` (0 = off) applies ``x[n] - a*x[n-1]`` first.
    """
    x, sr = check_audio(x, sr)
    n_mels = _check_n_mels(n_mels, sr)
    x = _apply_preemphasis(x, _check_preemphasis(preemphasis))
    spec = frame_spec(sr)
    t = _tables(sr, n_mels)
    n = spec.n_frames(x.size)
    out = np.empty((n, n_mels), dtype=np.float32)
    logmel_lanes(_pad_centre(x, spec.pad), 0, n, t.ftab, t.itab, out, 0)
    return out


@lru_cache(maxsize=8)
def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``[n_in, n_out]`` (scipy ``dct(type=2, norm='ortho')``)."""
    k = np.arange(n_out)[None, :]
    n = np.arange(n_in)[:, None]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    m[:, 0] *= np.sqrt(0.5)
    m.flags.writeable = False
    return m.astype(np.float32)


def mfcc(x: np.ndarray, sr: int, n_mfcc: int = 13, n_mels: int = 40) -> np.ndarray:
    """MFCCs, float32 ``[frames, n_mfcc]``: orthonormal DCT-II of :func:`log_mel`.

    Note the scale: our log is natural and not clipped, whereas ``librosa.feature.mfcc(y=...)``
    uses ``power_to_db`` (10*log10, ``top_db=80``). ``librosa.feature.mfcc(S=np.log(mel+1e-10))``
    is the exact equivalent.
    """
    lm = log_mel(x, sr, n_mels=n_mels)
    if (
        isinstance(n_mfcc, bool)
        or not isinstance(n_mfcc, (int, np.integer))
        or not 1 <= n_mfcc <= n_mels
    ):
        raise FeatureError(f"n_mfcc must be an int in 1..n_mels, got {n_mfcc!r}")
    return lm @ dct_matrix(lm.shape[1], int(n_mfcc))


class FeatureStream:
    """Incremental :func:`log_mel` for live audio.

    ``push(chunk)`` accepts chunks of any length (typically 10-20 ms) and returns the log-mel
    frames that became computable; ``flush()`` returns the last frames (those whose window
    reaches past the end of the signal, computed with the same right zero padding as the batch
    path). The concatenation of all returned frames equals ``log_mel(concatenated, sr)``
    (bit-identical in practice, tested to 1e-4; see docs/features.md): the stream starts with ``n_fft//2`` zeros of left padding,
    so frame ``t`` (centred at ``t*hop``) is emitted as soon as sample ``t*hop + n_fft//2 - 1``
    has arrived - a latency of 16 ms at both rates.
    """

    def __init__(self, sr: int, n_mels: int = 40, preemphasis: float = 0.0) -> None:
        self.sr = check_rate(sr)
        self.n_mels = _check_n_mels(n_mels, self.sr)
        self.preemphasis = _check_preemphasis(preemphasis)
        self._spec = frame_spec(self.sr)
        t = _tables(self.sr, self.n_mels)
        self._ftab, self._itab = t.ftab, t.itab
        self.reset()

    def reset(self) -> None:
        """Forget all audio; the next push starts a new signal."""
        spec = self._spec
        # Room for 64 hops beyond one frame: long chunks go through the lane kernel in
        # batches of up to 64 frames; any chunk size works (the kernel loops).
        self._buf = np.zeros(
            spec.n_fft + 64 * spec.hop + scratch_size(spec.n_fft), dtype=np.float32
        )
        self._state = np.zeros(6, dtype=np.float64)
        self._state[S_BUF] = spec.pad  # the left centre padding: pad zeros already buffered
        self._state[S_COEF] = self.preemphasis

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Append ``chunk`` (1-D float32/float64, finite); return new frames ``[k, n_mels]``."""
        # Cheap structural checks here; the kernel checks finiteness while copying.
        if type(chunk) is not np.ndarray or chunk.ndim != 1 or chunk.dtype.char not in "fd":
            chunk = check_audio(chunk, self.sr)[0]  # raises the precise FeatureError
        elif not chunk.flags.c_contiguous:  # e.g. one channel of interleaved audio
            chunk = np.ascontiguousarray(chunk)  # (else numba compiles a new specialisation)
        out = stream_step(self._buf, self._state, chunk, self._ftab, self._itab)
        if out.shape[0] == 0 and self._state[S_ERR]:
            self._state[S_ERR] = 0.0
            raise FeatureError("audio contains NaN or infinite samples (or |x| > 1e9)")
        return out

    def flush(self) -> np.ndarray:
        """Return the remaining frames (right zero padding) and reset the stream."""
        spec = self._spec
        n_in = int(self._state[S_SEEN])
        total = spec.n_frames(n_in) if n_in else 0
        k = total - int(self._state[S_OUT])
        out = np.empty((max(k, 0), self.n_mels), dtype=np.float32)
        if k > 0:
            n = int(self._state[S_BUF])
            xp = np.zeros(n + spec.pad + spec.n_fft, dtype=np.float32)
            xp[:n] = self._buf[:n]
            logmel_lanes(xp, 0, k, self._ftab, self._itab, out, 0)
        self.reset()
        return out
