"""Log-mel spectrogram, MFCC and the streaming log-mel frontend."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import njit

from ._common import FeatureError, check_audio, check_rate, frame_spec, register
from ._fft import JIT, cfft_1, cfft_lanes, rfft_power_1, rfft_power_lanes, rfft_tables


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


@register
@njit(**JIT)
def _logmel_frames(
    xp, start, n_frames, hop, win, rev, twr, twi, pwr, pwi, mlo, mhi, mw, out, row0
):  # pragma: no cover
    """Log-mel rows ``row0 .. row0+n_frames-1`` of ``out`` from frames of ``xp`` at ``start``.

    The mel filters are stored sparsely: band b covers bins mlo[b] .. mhi[b]-1 with weights
    mw[b, 0 .. mhi[b]-mlo[b]-1] (about 2 nonzeros per bin instead of n_mels per bin).
    Uses the lane layout (64 frames per FFT pass); see :func:`_logmel_single`.
    """
    m = rev.size
    n_mels = mlo.size
    re = np.empty((m, LANES), dtype=np.float32)
    im = np.empty((m, LANES), dtype=np.float32)
    p = np.empty((m + 1, LANES), dtype=np.float32)
    acc = np.empty((4, LANES), dtype=np.float32)
    floor = np.float32(1e-10)
    for f0 in range(0, n_frames, LANES):
        nl = min(LANES, n_frames - f0)
        _pack(xp, start, f0, nl, hop, win, rev, re, im)
        cfft_lanes(re, im, twr, twi)
        rfft_power_lanes(re, im, pwr, pwi, p)
        for b in range(n_mels):
            lo = mlo[b]
            for q in range(4):
                for g in range(LANES):
                    acc[q, g] = 0.0
            for k in range(lo, mhi[b]):
                w = mw[b, k - lo]
                q = (k - lo) & 3
                for g in range(LANES):
                    acc[q, g] += w * p[k, g]
            for g in range(nl):
                tot = (acc[0, g] + acc[1, g]) + (acc[2, g] + acc[3, g])
                out[row0 + f0 + g, b] = math.log(tot + floor)


@register
@njit(**JIT)
def _logmel_single(
    xp, start, n_frames, hop, win, rev, twr, twi, pwr, pwi, mlo, mhi, mw, out, row0
):  # pragma: no cover
    """Same as :func:`_logmel_frames` one frame at a time (bit-identical; for 1-2 frames)."""
    m = rev.size
    n_mels = mlo.size
    re = np.empty(m, dtype=np.float32)
    im = np.empty(m, dtype=np.float32)
    p = np.empty(m + 1, dtype=np.float32)
    floor = np.float32(1e-10)
    for f in range(n_frames):
        s = start + f * hop
        for n in range(m):
            i2 = 2 * rev[n]
            re[n] = xp[s + i2] * win[i2]
            im[n] = xp[s + i2 + 1] * win[i2 + 1]
        cfft_1(re, im, twr, twi)
        rfft_power_1(re, im, pwr, pwi, p)
        for b in range(n_mels):
            # Four interleaved partial sums: breaks the add-latency chain (no fastmath, so
            # LLVM may not reassociate); the lane kernel sums in exactly the same order.
            lo = mlo[b]
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            a3 = np.float32(0.0)
            hi = mhi[b]
            k = lo
            while k + 3 < hi:
                a0 += mw[b, k - lo] * p[k]
                a1 += mw[b, k - lo + 1] * p[k + 1]
                a2 += mw[b, k - lo + 2] * p[k + 2]
                a3 += mw[b, k - lo + 3] * p[k + 3]
                k += 4
            if k < hi:
                a0 += mw[b, k - lo] * p[k]
            if k + 1 < hi:
                a1 += mw[b, k - lo + 1] * p[k + 1]
            if k + 2 < hi:
                a2 += mw[b, k - lo + 2] * p[k + 2]
            out[row0 + f, b] = math.log((a0 + a1) + (a2 + a3) + floor)


# FeatureStream state vector (float64; counts are exact integers).
_S_BUF, _S_SEEN, _S_PREV, _S_COEF, _S_HOP, _S_NFFT, _S_ERR, _S_OUT = range(8)


@register
@njit(**JIT)
def _stream_step(buf, state, chunk, ftab, itab, mw):  # pragma: no cover - jitted
    """Append ``chunk`` to the stream buffer (with pre-emphasis) and emit every complete frame.

    Few arguments on purpose: numba's dispatch cost grows with each argument, and this runs
    every 10-20 ms per channel. Tables are packed (see ``_Tables.packed``); the state vector
    is described by the ``_S_*`` indices. A non-finite chunk sets ``state[_S_ERR]`` and
    changes nothing else.
    """
    n_mels = mw.shape[0]
    for i in range(chunk.size):
        v = chunk[i]
        if v - v != 0.0:
            state[_S_ERR] = 1.0
            return np.empty((0, n_mels), dtype=np.float32)
    hop = int(state[_S_HOP])
    n_fft = int(state[_S_NFFT])
    m = n_fft // 2
    win = ftab[:n_fft]
    twr = ftab[n_fft : n_fft + m - 1]
    twi = ftab[n_fft + m - 1 : n_fft + 2 * m - 2]
    pwr = ftab[n_fft + 2 * m - 2 : n_fft + 3 * m - 1]
    pwi = ftab[n_fft + 3 * m - 1 : n_fft + 4 * m]
    rev = itab[:m]
    mlo = itab[m : m + n_mels]
    mhi = itab[m + n_mels : m + 2 * n_mels]
    n = int(state[_S_BUF])
    total = n + chunk.size
    k_all = (total - n_fft) // hop + 1 if total >= n_fft else 0
    out = np.empty((k_all, n_mels), dtype=np.float32)
    prev = np.float32(state[_S_PREV])
    c = np.float32(state[_S_COEF])
    row = 0
    i = 0
    cap = buf.size
    while i < chunk.size:
        take = min(cap - n, chunk.size - i)
        for j in range(take):
            v = np.float32(chunk[i + j])
            buf[n + j] = v - c * prev if c != 0.0 else v
            prev = v
        n += take
        i += take
        k = (n - n_fft) // hop + 1 if n >= n_fft else 0
        if k > 0:
            if k >= 8:
                _logmel_frames(buf, 0, k, hop, win, rev, twr, twi, pwr, pwi, mlo, mhi, mw, out, row)
            else:
                _logmel_single(buf, 0, k, hop, win, rev, twr, twi, pwr, pwi, mlo, mhi, mw, out, row)
            row += k
            used = k * hop
            for j in range(n - used):  # keep the unfinished tail (< n_fft samples)
                buf[j] = buf[j + used]
            n -= used
    state[_S_BUF] = n
    state[_S_SEEN] += chunk.size
    state[_S_PREV] = prev
    state[_S_OUT] += row
    return out


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
        nz = [np.flatnonzero(row) for row in fb]
        self.mlo = np.array([z[0] if z.size else 0 for z in nz], dtype=np.int32)
        self.mhi = np.array([z[-1] + 1 if z.size else 0 for z in nz], dtype=np.int32)
        width = max(1, int((self.mhi - self.mlo).max()))
        self.mw = np.zeros((n_mels, width), dtype=f32)
        for b in range(n_mels):
            self.mw[b, : self.mhi[b] - self.mlo[b]] = fb[b, self.mlo[b] : self.mhi[b]]
        self.mel = (self.mlo, self.mhi, self.mw)
        # Packed copies for the streaming kernel (layout decoded in _stream_step).
        self.ftab = np.concatenate(self.fft[:1] + self.fft[2:]).astype(f32)
        self.itab = np.concatenate([rev, self.mlo, self.mhi]).astype(np.int32)


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
    _logmel_frames(_pad_centre(x, spec.pad), 0, n, spec.hop, *t.fft, *t.mel, out, 0)
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
    (within 1e-4; same kernels): the stream starts with ``n_fft//2`` zeros of left padding,
    so frame ``t`` (centred at ``t*hop``) is emitted as soon as sample ``t*hop + n_fft//2 - 1``
    has arrived - a latency of 16 ms at both rates.
    """

    def __init__(self, sr: int, n_mels: int = 40, preemphasis: float = 0.0) -> None:
        self.sr = check_rate(sr)
        self.n_mels = _check_n_mels(n_mels, self.sr)
        self.preemphasis = _check_preemphasis(preemphasis)
        self._spec = frame_spec(self.sr)
        t = _tables(self.sr, self.n_mels)
        self._ftab, self._itab, self._mw = t.ftab, t.itab, t.mw
        self.reset()

    def reset(self) -> None:
        """Forget all audio; the next push starts a new signal."""
        spec = self._spec
        # Room for 64 hops beyond one frame: long chunks go through the lane kernel in
        # batches of up to 64 frames; any chunk size works (the kernel loops).
        self._buf = np.zeros(spec.n_fft + 64 * spec.hop, dtype=np.float32)
        self._state = np.zeros(8, dtype=np.float64)
        self._state[_S_BUF] = spec.pad  # the left centre padding: pad zeros already buffered
        self._state[_S_COEF] = self.preemphasis
        self._state[_S_HOP] = spec.hop
        self._state[_S_NFFT] = spec.n_fft

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Append ``chunk`` (1-D float32/float64, finite); return new frames ``[k, n_mels]``."""
        # Cheap structural checks here; the kernel checks finiteness while copying.
        if type(chunk) is not np.ndarray or chunk.ndim != 1 or chunk.dtype.char not in "fd":
            check_audio(chunk, self.sr)  # raises the precise FeatureError
        out = _stream_step(self._buf, self._state, chunk, self._ftab, self._itab, self._mw)
        if out.shape[0] == 0 and self._state[_S_ERR]:
            self._state[_S_ERR] = 0.0
            raise FeatureError("audio contains NaN or infinite samples")
        return out

    def flush(self) -> np.ndarray:
        """Return the remaining frames (right zero padding) and reset the stream."""
        spec = self._spec
        n_in = int(self._state[_S_SEEN])
        total = spec.n_frames(n_in) if n_in else 0
        k = total - int(self._state[_S_OUT])
        out = np.empty((max(k, 0), self.n_mels), dtype=np.float32)
        if k > 0:
            n = int(self._state[_S_BUF])
            xp = np.zeros(n + spec.pad + spec.n_fft, dtype=np.float32)
            xp[:n] = self._buf[:n]
            t = _tables(self.sr, self.n_mels)
            _logmel_frames(xp, 0, k, spec.hop, *t.fft, *t.mel, out, 0)
        self.reset()
        return out
