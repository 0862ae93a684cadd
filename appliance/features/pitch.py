"""YIN fundamental-frequency tracker with a voicing decision (numba kernel)."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import njit

from ._common import FeatureError, check_audio, frame_spec, register
from ._fft import JIT, cfft_lanes, irfft_lanes, rfft_spec_lanes, rfft_tables

TROUGH_THRESHOLD = 0.1  # librosa.yin's absolute threshold for picking the first dip
OCTAVE_FIX = True
# octave pass: half window (frames), jump and nearness (log period ratio), CMNDF slack
OCTAVE_PARAMS = (10, math.log(1.3), math.log(1.12), 0.15)
N_CAND = 4  # alternative dips kept per frame for the octave-error pass
FALLBACK_TOL = 0.05  # no dip below the threshold: first dip within this of the global minimum
APERIODICITY_MAX = 0.35  # voiced only if the chosen dip of the CMNDF is below this
SILENCE_DB = -60.0  # voiced only if frame RMS is above this (dBFS) ...
RELATIVE_DB = -45.0  # ... and within this many dB of the loudest frame of the input


LANES = 64  # blocks transformed together (see _fft)


@register
@njit(**JIT)
def _block_acf(
    xp, base, n_blocks, hop, tau_max, rev, twr, twi, pwr, pwi, c, work
):  # pragma: no cover
    """Lagged products of every hop-sized block, shared by the two frames that contain it.

    ``c[b, tau] = sum_{j<hop} xp[q + j] * xp[q + j + tau]``, ``q = base + b*hop``, tau <= tau_max, via
    FFT: the block (zero-padded) against the following ``n_fft`` samples; no circular
    wrap because ``hop + tau_max <= n_fft``. Frame i's autocorrelation over its 2-hop window
    is then ``c[i] + c[i+1]``, so each block's correlation is computed once, not twice.
    Results go to ``c[:n_blocks]``; ``work`` is caller-owned scratch ``[8, m+1, LANES]``
    (allocated once per call of the YIN kernel, not per group).
    """
    m = rev.size
    re = work[0, :m]
    im = work[1, :m]
    ar = work[2]
    ai = work[3]
    br = work[4]
    bi = work[5]
    zr = work[6, :m]
    zi = work[7, :m]
    for b0 in range(0, n_blocks, LANES):
        nl = min(LANES, n_blocks - b0)
        for n in range(m):  # the segment: 2m samples from the block start
            i2 = 2 * rev[n]
            for g in range(LANES):
                q = base + (b0 + min(g, nl - 1)) * hop + i2
                re[n, g] = xp[q]
                im[n, g] = xp[q + 1]
        cfft_lanes(re, im, twr, twi)
        rfft_spec_lanes(re, im, pwr, pwi, ar, ai)
        for n in range(m):  # the block alone, zero-padded
            i2 = 2 * rev[n]
            for g in range(LANES):
                q = base + (b0 + min(g, nl - 1)) * hop + i2
                re[n, g] = xp[q] if i2 < hop else 0.0
                im[n, g] = xp[q + 1] if i2 + 1 < hop else 0.0
        cfft_lanes(re, im, twr, twi)
        rfft_spec_lanes(re, im, pwr, pwi, br, bi)
        for k in range(m + 1):  # cross-spectrum conj(B) * A
            for g in range(LANES):
                pr = br[k, g] * ar[k, g] + bi[k, g] * ai[k, g]
                pi = br[k, g] * ai[k, g] - bi[k, g] * ar[k, g]
                ar[k, g] = pr
                ai[k, g] = pi
        irfft_lanes(ar, ai, rev, twr, twi, pwr, pwi, re, im, zr, zi)
        for g in range(nl):
            for t in range(tau_max + 1):
                c[b0 + g, t] = re[t // 2, g] if t % 2 == 0 else im[t // 2, g]


@register
@njit(**JIT)
def _yin_kernel(xp, n_frames, hop, tau_min, tau_max, rev, twr, twi, pwr, pwi):  # pragma: no cover
    """Per-frame YIN on zero-padded float32 ``xp`` with a window of ``w = 2*hop`` samples.

    Frame ``i`` compares ``xp[s:s+w]`` with ``xp[s+tau:s+tau+w]`` for ``s = i*hop`` (the caller
    pads so that the analysed span ``w + tau_max`` is centred on ``i*hop`` of the signal).
    Returns (period in samples with parabolic refinement, CMNDF at the dip, normalised
    autocorrelation at the dip, window energy per sample).
    """
    w = 2 * hop
    n_lag = tau_max + 1
    c = np.empty((LANES, n_lag), dtype=np.float32)
    work = np.empty((8, rev.size + 1, LANES), dtype=np.float32)
    c0 = 0  # frame index of c[0]
    nb = 0  # valid rows of c
    period = np.zeros(n_frames, dtype=np.float64)
    aper = np.ones(n_frames, dtype=np.float64)
    rnorm = np.zeros(n_frames, dtype=np.float64)
    energy = np.zeros(n_frames, dtype=np.float64)
    cmn = np.empty(n_lag, dtype=np.float64)
    et = np.empty(n_lag, dtype=np.float64)
    cand_p = np.zeros((n_frames, N_CAND), dtype=np.float64)
    cand_v = np.ones((n_frames, N_CAND), dtype=np.float64)
    cand_r = np.zeros((n_frames, N_CAND), dtype=np.float64)
    for i in range(n_frames):
        s = i * hop
        if i - c0 + 1 >= nb:
            # Block correlations for the next LANES-1 frames (LANES blocks = one FFT pass;
            # one block recomputed per group): memory bounded for long inputs.
            c0 = i
            nb = min(LANES - 1, n_frames - i) + 1
            _block_acf(xp, s, nb, hop, tau_max, rev, twr, twi, pwr, pwi, c, work)
        # Sliding energy of the lagged window, E(tau) = sum_j x[s+tau+j]^2 (float64: the
        # difference function subtracts nearly equal terms).
        e = 0.0
        for j in range(w):
            e += float(xp[s + j]) * float(xp[s + j])
        e0 = e
        et[0] = e
        for t in range(1, n_lag):
            a = float(xp[s + t - 1])
            b = float(xp[s + t - 1 + w])
            e += b * b - a * a
            et[t] = e if e > 0.0 else 0.0
        energy[i] = e0 / w
        if e0 <= 1e-10:
            continue
        # Cumulative mean normalised difference (YIN eq. 8).
        cmn[0] = 1.0
        acc = 0.0
        for t in range(1, n_lag):
            d = e0 + et[t] - 2.0 * (float(c[i - c0, t]) + float(c[i - c0 + 1, t]))
            if d < 0.0:
                d = 0.0
            acc += d
            cmn[t] = d * t / acc if acc > 0.0 else 1.0
        # First local minimum below the threshold (as librosa.yin). Where there is none,
        # librosa takes the global minimum, which on band-limited or breathy speech is often
        # a multiple of the period (octave-down errors); we take the first local minimum
        # within FALLBACK_TOL of the global one instead.
        best = -1
        gmin = tau_min
        for t in range(tau_min, n_lag):
            if cmn[t] < cmn[gmin]:
                gmin = t
            if best < 0 and cmn[t] < TROUGH_THRESHOLD:
                left_ok = t == tau_min or cmn[t] < cmn[t - 1]
                right_ok = t == tau_max or cmn[t] <= cmn[t + 1]
                if left_ok and right_ok:
                    best = t
        if best < 0:
            best = gmin
            lim = cmn[gmin] + FALLBACK_TOL
            for t in range(tau_min, gmin):
                left_ok = t == tau_min or cmn[t] < cmn[t - 1]
                if left_ok and cmn[t] <= cmn[t + 1] and cmn[t] < lim:
                    best = t
                    break
        shift = 0.0
        if 1 < best < tau_max:  # cmn[tau_min - 1] exists: refine at the fmax edge too
            pa = cmn[best + 1] + cmn[best - 1] - 2.0 * cmn[best]
            pb = (cmn[best + 1] - cmn[best - 1]) / 2.0
            if abs(pb) < abs(pa):
                shift = -pb / pa
        period[i] = best + shift
        aper[i] = cmn[best]
        den = math.sqrt(e0 * et[best])
        r = float(c[i - c0, best]) + float(c[i - c0 + 1, best])
        rnorm[i] = r / den if den > 0.0 else 0.0
        # Alternative dips (the N_CAND deepest local minima) for the octave-error pass; only
        # where some dip is periodic enough to be voiced (the pass never uses others).
        if cmn[gmin] >= APERIODICITY_MAX:
            continue
        for t in range(tau_min, n_lag):
            if cmn[t] >= APERIODICITY_MAX:
                continue
            left_ok = t == tau_min or cmn[t] < cmn[t - 1]
            right_ok = t == tau_max or cmn[t] <= cmn[t + 1]
            if not (left_ok and right_ok):
                continue
            worst = 0
            for q in range(1, N_CAND):
                if cand_v[i, q] > cand_v[i, worst]:
                    worst = q
            if cmn[t] >= cand_v[i, worst]:
                continue
            sh = 0.0
            if 1 < t < tau_max:
                pa = cmn[t + 1] + cmn[t - 1] - 2.0 * cmn[t]
                pb = (cmn[t + 1] - cmn[t - 1]) / 2.0
                if abs(pb) < abs(pa):
                    sh = -pb / pa
            dt = math.sqrt(e0 * et[t])
            cand_p[i, worst] = t + sh
            cand_v[i, worst] = cmn[t]
            cand_r[i, worst] = (
                (float(c[i - c0, t]) + float(c[i - c0 + 1, t])) / dt if dt > 0 else 0.0
            )
    return period, aper, rnorm, energy, cand_p, cand_v, cand_r


@register
@njit(**JIT)
def _octave_fix(
    period, aper, rnorm, voiced, cand_p, cand_v, cand_r, half, jump, near, slack
):  # pragma: no cover
    """Replace period-multiple errors by the dip nearest the local pitch (a light pYIN-style pass).

    For each voiced frame, the reference is the median log-period of the voiced frames within
    ``half`` frames in the same voiced run (from the first-pass choices). A frame further than
    ``jump`` (log ratio) from it takes the candidate dip within ``near`` of the reference, if
    that dip is periodic enough (below the voicing threshold and at most ``slack`` above the
    chosen one). Edits ``period``/``aper``/``rnorm`` in place; returns the number of changes.
    """
    n = period.size
    logp = np.zeros(n)
    for i in range(n):
        if voiced[i]:
            logp[i] = math.log(period[i])
    buf = np.empty(2 * half + 1)
    new_p = period.copy()
    changed = 0
    for i in range(n):
        if not voiced[i]:
            continue
        k = 0
        j = i
        while j >= 0 and i - j <= half and voiced[j]:
            buf[k] = logp[j]
            k += 1
            j -= 1
        j = i + 1
        while j < n and j - i <= half and voiced[j]:
            buf[k] = logp[j]
            k += 1
            j += 1
        if k < 3:
            continue
        ref = np.median(buf[:k])
        if abs(logp[i] - ref) <= jump:
            continue
        best = -1
        for q in range(cand_p.shape[1]):
            v = cand_v[i, q]
            if cand_p[i, q] <= 0.0 or v >= APERIODICITY_MAX or v > aper[i] + slack:
                continue
            if abs(math.log(cand_p[i, q]) - ref) < near and (best < 0 or v < cand_v[i, best]):
                best = q
        if best >= 0:
            new_p[i] = cand_p[i, best]
            aper[i] = cand_v[i, best]
            rnorm[i] = cand_r[i, best]
            changed += 1
    period[:] = new_p
    return changed


@lru_cache(maxsize=8)
def _fft_tables32(n: int) -> tuple[np.ndarray, ...]:
    rev, twr, twi, pwr, pwi = rfft_tables(n)
    return (rev,) + tuple(a.astype(np.float32) for a in (twr, twi, pwr, pwi))


def _yin_params(sr: int, fmin: float, fmax: float) -> tuple[int, int, int]:
    if not (np.isfinite(fmin) and np.isfinite(fmax) and 0 < fmin < fmax <= sr / 2):
        raise FeatureError(f"need 0 < fmin < fmax <= sr/2, got fmin={fmin!r}, fmax={fmax!r}")
    tau_min = max(2, int(math.floor(sr / fmax)))
    tau_max = int(math.ceil(sr / fmin))
    if tau_max > sr // 20:  # 50 ms: keeps the per-frame cost bounded
        raise FeatureError(f"fmin={fmin!r} too low (minimum 20 Hz)")
    hop = frame_spec(sr).hop
    n_fft = 1 << int(math.ceil(math.log2(hop + tau_max + 1)))  # block + max lag, no wrap
    return tau_min, tau_max, n_fft


def yin_analysis(x: np.ndarray, sr: int, fmin: float = 65.0, fmax: float = 400.0):  # type: ignore[no-untyped-def]
    """YIN on validated float32 audio: (f0 Hz with 0 = unvoiced, aperiodicity, rnorm, energy).

    All arrays have ``1 + len(x)//hop`` entries; frame ``i`` is centred on sample ``i*hop``.
    """
    spec = frame_spec(sr)
    tau_min, tau_max, n_fft = _yin_params(sr, fmin, fmax)
    n_frames = spec.n_frames(x.size)
    left = (2 * spec.hop + tau_max) // 2  # centre the window+lag span on frame i*hop
    xp = np.zeros(left + x.size + n_fft + 2 * spec.hop + 2, dtype=np.float32)
    xp[left : left + x.size] = x
    tabs = _fft_tables32(n_fft)
    period, aper, rnorm, energy, cp, cv, cr = _yin_kernel(
        xp, n_frames, spec.hop, tau_min, tau_max, *tabs
    )
    db = 10.0 * np.log10(energy + 1e-20)
    loud = (db > SILENCE_DB) & (db > db.max() + RELATIVE_DB)

    def decide() -> np.ndarray:
        f0 = sr / np.maximum(period, 1e-9)
        ok = (period > 0) & (aper < APERIODICITY_MAX) & loud
        return ok & (f0 >= fmin * 0.97) & (f0 <= fmax * 1.03)

    voiced = decide()
    if OCTAVE_FIX:
        _octave_fix(period, aper, rnorm, voiced, cp, cv, cr, *OCTAVE_PARAMS)
        voiced = decide()
    f0 = np.where(voiced, sr / np.maximum(period, 1e-9), 0.0)
    return f0.astype(np.float32), aper, rnorm, energy


def yin_pitch(x: np.ndarray, sr: int, fmin: float = 65.0, fmax: float = 400.0) -> np.ndarray:
    """Fundamental frequency in Hz per 10 ms frame (float32 ``[1 + len(x)//hop]``), 0 = unvoiced.

    Frame ``i`` is centred on ``i*10 ms`` (librosa ``center=True``, zero padding). YIN
    (de Cheveigne & Kawahara 2002): difference function over a 20 ms window for lags up to
    ``ceil(sr/fmin)``, cumulative-mean normalisation, first dip below 0.1 (else the first
    dip within 0.05 of the global minimum) with parabolic refinement, like ``librosa.yin``;
    then a pass that moves isolated period-multiple errors to the dip nearest the local
    median pitch. A frame is voiced when the dip is below ``APERIODICITY_MAX`` (0.35), its
    RMS is above -60 dBFS and within 45 dB of the loudest frame. Works on telephone-band
    audio: YIN keys on periodicity, not on the (filtered-out) fundamental. Details and
    measured accuracy: docs/features.md.
    """
    x, sr = check_audio(x, sr)
    return yin_analysis(x, sr, float(fmin), float(fmax))[0]
