"""Per-utterance feature statistics of the emotion model, from the runtime frontend
(`appliance.features`). `appliance.emotion` re-exports everything here; training imports it from
there, so there is one implementation for training and serving."""

from __future__ import annotations

import numpy as np

FEATURE_VERSION = "emo-feat-2"
N_MELS = 40
N_MFCC = 13
ACTIVE_RANGE_NATS = 6.9  # frames within ~30 dB (power) of the loudest frame are "active"
MIN_ACTIVE_FRAMES = 10


def _frontend():
    from appliance import features  # imported lazily: numba compile cost only when used

    return features


def feature_names() -> list[str]:
    """Names of the raw per-utterance feature vector, in order (depends on the frontend)."""
    names: list[str] = []
    for stat in ("mean", "std", "dstd"):
        names += [f"mel{i:02d}_{stat}" for i in range(N_MELS)]
    for stat in ("mean", "std", "dstd"):
        names += [f"mfcc{i:02d}_{stat}" for i in range(N_MFCC)]
    names += ["energy_mean", "energy_std", "energy_p10", "energy_p90", "active_ratio"]
    names += [f"fn_{n}" for n in _frontend().FUNCTIONAL_NAMES]
    # voiced / unvoiced and temporal (thirds of the active frames) statistics
    names += [f"mfcc{i:02d}_voiced_mean" for i in range(N_MFCC)]
    names += [f"mfcc{i:02d}_voiced_std" for i in range(N_MFCC)]
    names += [f"mel{i:02d}_voiced_mean" for i in range(N_MELS)]
    names += [f"mfcc{i:02d}_unvoiced_mean" for i in range(N_MFCC)]
    for third in ("t1", "t2", "t3"):
        names += [f"mfcc{i:02d}_{third}_mean" for i in range(N_MFCC)]
    names += [f"mfcc{i:02d}_ddstd" for i in range(N_MFCC)]
    names += ["f0_st_p05", "f0_st_p95", "f0_st_absdelta", "f0_st_t1", "f0_st_t2", "f0_st_t3"]
    names += ["energy_skew", "energy_kurt", "voiced_ratio", "energy_t1", "energy_t2", "energy_t3"]
    names += ["mel_centroid_voiced_mean", "mel_centroid_voiced_std"]
    return names


def _frame_stats(m: np.ndarray, active: np.ndarray) -> np.ndarray:
    a = m[active]
    d = np.zeros_like(m)
    if len(m) > 2:
        d[1:-1] = 0.5 * (m[2:] - m[:-2])
    da = d[active]
    return np.concatenate([a.mean(0), a.std(0), da.std(0)])


def utterance_features(x: np.ndarray, sr: int) -> np.ndarray:
    """Raw (unnormalised) feature vector of one utterance, float64[len(feature_names())]."""
    F = _frontend()
    x = np.asarray(x)
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    lm = np.asarray(F.log_mel(x, sr, n_mels=N_MELS), dtype=np.float64)
    mf = np.asarray(F.mfcc(x, sr, n_mfcc=N_MFCC, n_mels=N_MELS), dtype=np.float64)
    n = min(len(lm), len(mf))
    if n == 0:
        raise ValueError("utterance too short for the emotion frontend")
    lm, mf = lm[:n], mf[:n]
    mx = lm.max(axis=1, keepdims=True)
    energy = (mx + np.log(np.exp(lm - mx).sum(axis=1, keepdims=True)))[:, 0]
    active = energy >= energy.max() - ACTIVE_RANGE_NATS
    if active.sum() < MIN_ACTIVE_FRAMES:
        active = np.zeros(n, dtype=bool)
        active[np.argsort(energy)[-min(n, MIN_ACTIVE_FRAMES) :]] = True
    ea = energy[active]
    fn = F.functionals(x, sr)
    fvals = [float(fn[k]) for k in F.FUNCTIONAL_NAMES]
    out = np.concatenate(
        [
            _frame_stats(lm, active),
            _frame_stats(mf, active),
            [ea.mean(), ea.std(), np.percentile(ea, 10), np.percentile(ea, 90), active.mean()],
            fvals,
            _voiced_temporal(x, sr, lm, mf, energy, active),
        ]
    )
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _voiced_temporal(x, sr, lm, mf, energy, active) -> np.ndarray:
    """Voiced/unvoiced MFCC and mel statistics, MFCC/pitch/energy by thirds, pitch range, energy shape."""
    f0 = np.asarray(_frontend().yin_pitch(x, sr), dtype=np.float64)
    n = len(lm)
    f0 = np.pad(f0, (0, max(0, n - len(f0))))[:n]
    voiced = (f0 > 0) & active
    v = voiced if voiced.sum() >= 5 else active
    uv = active & ~voiced
    out: list = []
    out += list(mf[v].mean(0)) + list(mf[v].std(0)) + list(lm[v].mean(0))
    out += list(mf[uv].mean(0) if uv.sum() >= 3 else mf[active].mean(0))
    idx = np.where(active)[0]
    thirds = np.array_split(idx, 3)
    for t in thirds:
        out += list(mf[t].mean(0) if len(t) else mf[active].mean(0))
    dd = np.zeros_like(mf)
    if n > 4:
        dd[2:-2] = mf[4:] - 2 * mf[2:-2] + mf[:-4]
    out += list(dd[active].std(0))
    fv = f0[voiced]
    st = 12 * np.log2(fv / 55.0) if len(fv) >= 3 else np.zeros(3)
    parts = np.array_split(st, 3)
    out += [np.percentile(st, 5), np.percentile(st, 95), float(np.mean(np.abs(np.diff(st))))]
    out += [p.mean() if len(p) else st.mean() for p in parts]
    e = energy[active]
    sd = e.std() + 1e-9
    out += [
        float(((e - e.mean()) ** 3).mean() / sd**3),
        float(((e - e.mean()) ** 4).mean() / sd**4),
        voiced.sum() / max(active.sum(), 1),
    ]
    out += [energy[t].mean() if len(t) else e.mean() for t in thirds]
    w = np.exp(lm[v] - lm[v].max(1, keepdims=True))
    c = (w * np.arange(lm.shape[1])).sum(1) / w.sum(1)
    out += [c.mean(), c.std()]
    return np.asarray(out, dtype=np.float64)
