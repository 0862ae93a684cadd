"""YIN fundamental-frequency tracker with a voicing decision (numba kernel)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._common import FeatureError, check_audio, frame_spec, register

TROUGH_THRESHOLD = 0.1  # librosa.yin's absolute threshold for picking the first dip
APERIODICITY_MAX = 0.35  # voiced only if the chosen dip of the CMNDF is below this
SILENCE_DB = -60.0  # voiced only if frame RMS is above this (dBFS) ...
RELATIVE_DB = -45.0  # ... and within this many dB of the loudest frame of the input


@register
@njit(cache=True, nogil=True)
def _yin_kernel(xp, n_frames, hop, w, tau_min, tau_max, sr):  # pragma: no cover - jitted
    """Per-frame YIN on zero-padded float32 ``xp``.

    Frame ``i`` compares ``xp[s:s+w]`` with ``xp[s+tau:s+tau+w]`` for ``s = i*hop`` (the caller
    pads so that the analysed span ``w + tau_max`` is centred on ``i*hop`` of the signal).
    Returns (period in samples with parabolic refinement, CMNDF at the dip, normalised
    autocorrelation at the dip, window energy per sample).
    """
    n_lag = tau_max + 1
    period = np.zeros(n_frames, dtype=np.float64)
    aper = np.ones(n_frames, dtype=np.float64)
    rnorm = np.zeros(n_frames, dtype=np.float64)
    energy = np.zeros(n_frames, dtype=np.float64)
    r = np.empty(n_lag, dtype=np.float32)
    cmn = np.empty(n_lag, dtype=np.float64)
    et = np.empty(n_lag, dtype=np.float64)
    for i in range(n_frames):
        s = i * hop
        # Autocorrelation r[tau] = sum_j x[s+j] x[s+j+tau] as an axpy over tau (vectorises).
        for t in range(n_lag):
            r[t] = 0.0
        for j in range(w):
            a = xp[s + j]
            if a != 0.0:
                base = s + j
                for t in range(n_lag):
                    r[t] += a * xp[base + t]
        # Sliding energy of the lagged window, E(tau) = sum_j x[s+tau+j]^2.
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
        if e0 <= 1e-12:
            continue
        # Cumulative mean normalised difference (YIN eq. 8).
        cmn[0] = 1.0
        acc = 0.0
        for t in range(1, n_lag):
            d = e0 + et[t] - 2.0 * r[t]
            if d < 0.0:
                d = 0.0
            acc += d
            cmn[t] = d * t / acc if acc > 0.0 else 1.0
        # First local minimum below the threshold, else the global minimum (as librosa.yin).
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
        shift = 0.0
        if tau_min < best < tau_max:
            pa = cmn[best + 1] + cmn[best - 1] - 2.0 * cmn[best]
            pb = (cmn[best + 1] - cmn[best - 1]) / 2.0
            if abs(pb) < abs(pa):
                shift = -pb / pa
        period[i] = best + shift
        aper[i] = cmn[best]
        den = math.sqrt(e0 * et[best])
        rnorm[i] = r[best] / den if den > 0.0 else 0.0
    return period, aper, rnorm, energy


def _yin_params(sr: int, fmin: float, fmax: float) -> tuple[int, int, int]:
    if not (np.isfinite(fmin) and np.isfinite(fmax) and 0 < fmin < fmax <= sr / 2):
        raise FeatureError(f"need 0 < fmin < fmax <= sr/2, got fmin={fmin!r}, fmax={fmax!r}")
    tau_min = max(2, int(math.floor(sr / fmax)))
    tau_max = int(math.ceil(sr / fmin))
    if tau_max > sr // 20:  # 50 ms: keeps the per-frame cost bounded
        raise FeatureError(f"fmin={fmin!r} too low (minimum 20 Hz)")
    w = frame_spec(sr).n_fft // 2  # 16 ms integration window (256 / 128 samples)
    return tau_min, tau_max, w


def yin_analysis(x: np.ndarray, sr: int, fmin: float = 65.0, fmax: float = 400.0):  # type: ignore[no-untyped-def]
    """YIN on validated float32 audio: (f0 Hz with 0 = unvoiced, aperiodicity, rnorm, energy).

    All arrays have ``1 + len(x)//hop`` entries; frame ``i`` is centred on sample ``i*hop``.
    """
    spec = frame_spec(sr)
    tau_min, tau_max, w = _yin_params(sr, fmin, fmax)
    n_frames = spec.n_frames(x.size)
    span = w + tau_max
    left = span // 2
    xp = np.zeros(left + x.size + span + spec.hop, dtype=np.float32)
    xp[left : left + x.size] = x
    period, aper, rnorm, energy = _yin_kernel(xp, n_frames, spec.hop, w, tau_min, tau_max, sr)
    with np.errstate(divide="ignore"):
        f0 = np.where(period > 0, sr / np.maximum(period, 1e-9), 0.0)
    db = 10.0 * np.log10(energy + 1e-20)
    voiced = (
        (aper < APERIODICITY_MAX)
        & (db > SILENCE_DB)
        & (db > db.max() + RELATIVE_DB)
        & (f0 >= fmin * 0.97)
        & (f0 <= fmax * 1.03)
    )
    f0 = np.where(voiced, f0, 0.0)
    return f0.astype(np.float32), aper, rnorm, energy


def yin_pitch(x: np.ndarray, sr: int, fmin: float = 65.0, fmax: float = 400.0) -> np.ndarray:
    """Fundamental frequency in Hz per 10 ms frame (float32 ``[1 + len(x)//hop]``), 0 = unvoiced.

    Frame ``i`` is centred on ``i*10 ms`` (librosa ``center=True``, zero padding). YIN
    (de Cheveigne & Kawahara 2002): difference function over a 16 ms window for lags up to
    ``ceil(sr/fmin)``, cumulative-mean normalisation, first dip below 0.1 (else the global
    minimum) with parabolic refinement, like ``librosa.yin``. A frame is voiced when the
    dip is below ``APERIODICITY_MAX`` (0.35), its RMS is above -60 dBFS and within 45 dB of
    the loudest frame. Works on telephone-band audio: YIN keys on periodicity, not on the
    (filtered-out) fundamental.
    """
    x, sr = check_audio(x, sr)
    return yin_analysis(x, sr, float(fmin), float(fmax))[0]
