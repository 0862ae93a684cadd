"""eGeMAPS-like utterance functionals (see docs/features.md for the full table)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._common import LOG_FLOOR, check_audio, frame_spec, register
from ._fft import JIT
from .mel import dct_matrix, mel_filterbank, power_spectrogram
from .pitch import yin_analysis

# Stable order; new names are only ever appended.
FUNCTIONAL_NAMES: tuple[str, ...] = (
    "f0_st_mean",
    "f0_st_std",
    "f0_st_p20",
    "f0_st_p50",
    "f0_st_p80",
    "f0_st_range_20_80",
    "f0_st_slope",
    "f0_st_rising_slope_mean",
    "f0_st_falling_slope_mean",
    "loudness_mean",
    "loudness_std",
    "loudness_p20",
    "loudness_p50",
    "loudness_p80",
    "loudness_range_20_80",
    "loudness_rising_slope_mean",
    "loudness_falling_slope_mean",
    "jitter_local",
    "shimmer_local_db",
    "hnr_db",
    "spectral_slope_0_500",
    "spectral_slope_500_1500",
    "alpha_ratio_db",
    "hammarberg_db",
    "spectral_flux_mean",
    "mfcc1_mean",
    "mfcc1_std",
    "mfcc2_mean",
    "mfcc2_std",
    "mfcc3_mean",
    "mfcc3_std",
    "mfcc4_mean",
    "mfcc4_std",
    "voiced_segments_per_sec",
    "unvoiced_segments_per_sec",
    "voiced_segment_mean_s",
    "unvoiced_segment_mean_s",
    "loudness_peaks_per_sec",
    "equivalent_sound_level_db",
)

HOP_S = 0.01
PEAK_PROMINENCE = 0.1  # loudness peaks: relative prominence (tuned against openSMILE)
LEVEL_FLOOR_DB = -100.0


@register
@njit(**JIT)
def _jitter_shimmer(x, f0, hop, sr):  # pragma: no cover - jitted
    """Cycle-level local jitter and shimmer (dB) from glottal pulse marks (Praat-like).

    In each voiced run (>= 3 frames) pulses are the waveform peaks (polarity of the larger
    excursion) searched 0.8-1.2 local periods after the previous pulse, refined to sub-sample
    position by a parabola. Jitter = mean of |T_k - T_k+1| / mean(T_k, T_k+1) over consecutive
    periods whose ratio is below 1.2; shimmer = mean |20 log10(A_k+1 / A_k)| of the peak amplitudes.
    """
    n = f0.size
    sum_dt = 0.0
    n_dt = 0
    sum_t = 0.0
    n_t = 0
    sum_da = 0.0
    n_da = 0
    i = 0
    while i < n:
        if f0[i] <= 0.0:
            i += 1
            continue
        j = i
        while j < n and f0[j] > 0.0:
            j += 1
        if j - i >= 3:
            s0 = max(0, i * hop - hop // 2)
            s1 = min(x.size, (j - 1) * hop + hop // 2)
            mx = 0.0
            mn = 0.0
            for t in range(s0, s1):
                mx = max(mx, x[t])
                mn = min(mn, x[t])
            sgn = 1.0 if mx >= -mn else -1.0
            per = sr / f0[i]
            p = s0
            for t in range(s0, min(s1, s0 + int(per) + 1)):
                if sgn * x[t] > sgn * x[p]:
                    p = t
            prev_pos = float(p)
            prev_a = sgn * x[p]
            prev_t = -1.0
            while True:
                fr = min(max(int(p / hop + 0.5), i), j - 1)
                per = sr / f0[fr]
                lo = p + int(0.8 * per)
                hi = p + int(1.2 * per) + 1
                if hi + 1 >= s1:
                    break
                q = lo
                for t in range(lo, hi):
                    if sgn * x[t] > sgn * x[q]:
                        q = t
                y0 = sgn * x[q - 1]
                y1 = sgn * x[q]
                y2 = sgn * x[q + 1]
                den = y0 - 2.0 * y1 + y2
                pos = q + (0.5 * (y0 - y2) / den if den < 0.0 else 0.0)
                per_k = pos - prev_pos
                if per_k > 0.0:
                    sum_t += per_k
                    n_t += 1
                    if prev_t > 0.0 and max(per_k, prev_t) < 1.2 * min(per_k, prev_t):
                        sum_dt += 2.0 * abs(per_k - prev_t) / (per_k + prev_t)
                        n_dt += 1
                    prev_t = per_k
                if y1 > 0.0 and prev_a > 0.0:
                    sum_da += abs(20.0 * math.log10(y1 / prev_a))
                    n_da += 1
                prev_a = y1
                prev_pos = pos
                p = q
        i = j
    jit = sum_dt / n_dt if n_dt > 0 else 0.0
    shim = sum_da / n_da if n_da > 0 else 0.0
    return jit, shim


def _sma3(v: np.ndarray) -> np.ndarray:
    """3-frame moving average (openSMILE's ``sma3``), edges averaged over what exists."""
    if v.size < 3:
        return v.copy()
    out = v.copy()
    out[1:-1] = (v[:-2] + v[1:-1] + v[2:]) / 3.0
    return out


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start indices and lengths of the runs of True in ``mask``."""
    m = np.concatenate([[False], mask.astype(bool), [False]])
    d = np.diff(m.astype(np.int8))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return starts, ends - starts


def _clean_voicing(voiced: np.ndarray, gap: int = 2, min_len: int = 3) -> np.ndarray:
    v = voiced.copy()
    starts, lengths = _runs(~v)
    for s0, ln in zip(starts, lengths, strict=True):
        if ln <= gap and s0 > 0 and s0 + ln < v.size:
            v[s0 : s0 + ln] = True
    starts, lengths = _runs(v)
    for s0, ln in zip(starts, lengths, strict=True):
        if ln < min_len:
            v[s0 : s0 + ln] = False
    return v


def _count_peaks(v: np.ndarray, prominence: float) -> int:
    """Peaks that rise and then fall by ``prominence`` x (max - min) of the contour."""
    if v.size < 3:
        return 0
    thr = prominence * float(v.max() - v.min())
    if thr <= 0.0:
        return 0
    count = 0
    trough = float(v[0])
    cand = None
    for val in v.tolist():
        if cand is None:
            if val < trough:
                trough = val
            elif val - trough > thr:
                cand = val
        elif val > cand:
            cand = val
        elif cand - val > thr:
            count += 1
            trough = val
            cand = None
    return count


def _rise_fall(v: np.ndarray) -> tuple[float, float]:
    """Mean slope (units/s) of rising and of falling stretches between local extrema."""
    if v.size < 2:
        return 0.0, 0.0
    dv = np.diff(v)
    rise, fall = [], []
    i = 0
    n = dv.size
    while i < n:
        j = i
        sign = dv[i] > 0
        while j + 1 < n and (dv[j + 1] > 0) == sign:
            j += 1
        slope = float((v[j + 1] - v[i]) / ((j + 1 - i) * HOP_S))
        (rise if sign else fall).append(slope)
        i = j + 1
    r = float(np.mean(rise)) if rise else 0.0
    f = float(-np.mean(fall)) if fall else 0.0
    return r, f


def _band_slope_coefs(freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Weights c such that ``y @ c`` is the least-squares slope of y(f) over lo <= f <= hi."""
    sel = (freqs >= lo) & (freqs <= hi)
    c = np.zeros(freqs.size)
    f = freqs[sel]
    if f.size >= 2:
        fc = f - f.mean()
        c[sel] = fc / np.sum(fc**2)
    return c


def _stats(v: np.ndarray, prefix: str, out: dict[str, float]) -> None:
    if v.size == 0:
        for k in ("mean", "std", "p20", "p50", "p80", "range_20_80"):
            out[f"{prefix}_{k}"] = 0.0
        return
    p20, p50, p80 = np.percentile(v, [20, 50, 80])
    out[f"{prefix}_mean"] = float(v.mean())
    out[f"{prefix}_std"] = float(v.std())
    out[f"{prefix}_p20"] = float(p20)
    out[f"{prefix}_p50"] = float(p50)
    out[f"{prefix}_p80"] = float(p80)
    out[f"{prefix}_range_20_80"] = float(p80 - p20)


def functionals(x: np.ndarray, sr: int) -> dict[str, float]:
    """Utterance-level acoustic functionals, keys in :data:`FUNCTIONAL_NAMES` order.

    Computed from the same 10 ms frames as :func:`log_mel` and :func:`yin_pitch`; every value
    is finite (undefined statistics such as pitch of silence are 0). Definitions: see
    docs/features.md.
    """
    x, sr = check_audio(x, sr)
    spec = frame_spec(sr)
    out: dict[str, float] = {}
    duration = max(x.size / sr, HOP_S)

    power = power_spectrogram(x, sr).astype(np.float64)
    fb = mel_filterbank(sr, spec.n_fft, 40).astype(np.float64)
    mel = power @ fb.T
    n = mel.shape[0]
    f0, aper, rnorm, energy = yin_analysis(x, sr)
    f0 = f0[:n].astype(np.float64)
    voiced = f0 > 0

    # Pitch in semitones re 27.5 Hz, smoothed within voiced stretches.
    st = np.zeros(n)
    st[voiced] = 12.0 * np.log2(f0[voiced] / 27.5)
    starts, lengths = _runs(voiced)
    st_s = st.copy()
    rises, falls = [], []
    for s0, ln in zip(starts, lengths, strict=True):
        seg = _sma3(st[s0 : s0 + ln])
        st_s[s0 : s0 + ln] = seg
        r, f = _rise_fall(seg)
        if ln >= 2:
            rises.append(r)
            falls.append(f)
    vst = st_s[voiced]
    _stats(vst, "f0_st", out)
    if vst.size >= 2:
        t = np.flatnonzero(voiced) * HOP_S
        tc = t - t.mean()
        den = float(np.sum(tc**2))
        out["f0_st_slope"] = float(np.sum(tc * (vst - vst.mean())) / den) if den > 0 else 0.0
    else:
        out["f0_st_slope"] = 0.0
    out["f0_st_rising_slope_mean"] = float(np.mean(rises)) if rises else 0.0
    out["f0_st_falling_slope_mean"] = float(np.mean(falls)) if falls else 0.0

    # Loudness: sum of compressed (power^0.3, Stevens-like) mel-band energies, sma3.
    loud = _sma3(np.sum(np.power(mel, 0.3), axis=1))
    _stats(loud, "loudness", out)
    r, f = _rise_fall(loud)
    out["loudness_rising_slope_mean"] = r
    out["loudness_falling_slope_mean"] = f

    # Voice quality: cycle-to-cycle jitter and shimmer from pulse marks in voiced runs.
    jit, shim = _jitter_shimmer(x, f0.astype(np.float32), spec.hop, float(sr))
    out["jitter_local"] = float(jit)
    out["shimmer_local_db"] = float(shim)
    if voiced.any():
        rn = np.clip(rnorm[:n][voiced], 1e-4, 1.0 - 1e-4)
        out["hnr_db"] = float(np.mean(10.0 * np.log10(rn / (1.0 - rn))))
    else:
        out["hnr_db"] = 0.0

    # Spectral shape over voiced frames.
    freqs = np.linspace(0.0, sr / 2, spec.n_bins)
    if voiced.any():
        pv = power[voiced]
        pdb = 10.0 * np.log10(pv + LOG_FLOOR)
        out["spectral_slope_0_500"] = float(np.mean(pdb @ _band_slope_coefs(freqs, 0, 500)))
        out["spectral_slope_500_1500"] = float(np.mean(pdb @ _band_slope_coefs(freqs, 500, 1500)))
        lo = pv[:, (freqs >= 50) & (freqs < 1000)].sum(axis=1)
        hi = pv[:, (freqs >= 1000) & (freqs <= 5000)].sum(axis=1)
        out["alpha_ratio_db"] = float(np.mean(10.0 * np.log10((lo + LOG_FLOOR) / (hi + LOG_FLOOR))))
        m_lo = pv[:, freqs < 2000].max(axis=1)
        m_hi = pv[:, (freqs >= 2000) & (freqs <= 5000)].max(axis=1)
        out["hammarberg_db"] = float(
            np.mean(10.0 * np.log10((m_lo + LOG_FLOOR) / (m_hi + LOG_FLOOR)))
        )
    else:
        for k in (
            "spectral_slope_0_500",
            "spectral_slope_500_1500",
            "alpha_ratio_db",
            "hammarberg_db",
        ):
            out[k] = 0.0
    # Flux: L2 norm of the change of the (unnormalised) magnitude spectrum between frames.
    if n >= 2:
        mag = np.sqrt(power)
        out["spectral_flux_mean"] = float(np.mean(np.linalg.norm(np.diff(mag, axis=0), axis=1)))
    else:
        out["spectral_flux_mean"] = 0.0

    cep = np.log(mel + LOG_FLOOR) @ dct_matrix(40, 5).astype(np.float64)
    for k in range(1, 5):
        out[f"mfcc{k}_mean"] = float(cep[:, k].mean())
        out[f"mfcc{k}_std"] = float(cep[:, k].std())

    # Temporal structure, on a cleaned voicing mask: unvoiced gaps of <= 2 frames bridged,
    # voiced runs shorter than 3 frames dropped (tuned against openSMILE's segment counts).
    _, vl = _runs(_clean_voicing(voiced))
    _, ul = _runs(~_clean_voicing(voiced))
    out["voiced_segments_per_sec"] = float(vl.size / duration)
    out["unvoiced_segments_per_sec"] = float(ul.size / duration)
    out["voiced_segment_mean_s"] = float(vl.mean() * HOP_S) if vl.size else 0.0
    out["unvoiced_segment_mean_s"] = float(ul.mean() * HOP_S) if ul.size else 0.0
    out["loudness_peaks_per_sec"] = float(_count_peaks(loud, PEAK_PROMINENCE) / duration)
    ms = float(np.mean(np.square(x, dtype=np.float64)))
    out["equivalent_sound_level_db"] = max(LEVEL_FLOOR_DB, 10.0 * np.log10(ms + 1e-30))

    return {k: (v if np.isfinite(v := float(out[k])) else 0.0) for k in FUNCTIONAL_NAMES}
