"""Metrics, calibration and the cross-fitted arousal decision rule."""

from __future__ import annotations

import numpy as np

from appliance.emotion import model as E

from .config import N_CLS, Config


def uar(y, p, n) -> float:
    r = [np.mean(p[y == c] == c) for c in range(n) if np.any(y == c)]
    return float(np.mean(r)) if r else float("nan")


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    e = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            e += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(e)


def fit_temperature(logp: np.ndarray, y: np.ndarray) -> float:
    def nll(T):
        z = logp / T
        z = z - z.max(1, keepdims=True)
        lse = np.log(np.exp(z).sum(1))
        return float(np.mean(lse - z[np.arange(len(y)), y]))

    grid = np.exp(np.linspace(np.log(0.25), np.log(6), 200))
    return float(grid[int(np.argmin([nll(t) for t in grid]))])


def apply_temperature(logp, T):
    z = logp / T
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def arousal_from_probs(
    probs: np.ndarray,
    arousal_high: np.ndarray | None = None,
    w: float = 0.0,
    method: str = "circumplex",
    threshold: float = 0.0,
) -> np.ndarray:
    """Arousal exactly as the runtime computes it (`appliance.emotion.arousal_value`); > 0 = high."""
    return E.arousal_value(probs, arousal_high, w, method, threshold)


def choose_arousal_threshold(score: np.ndarray, a: np.ndarray) -> float:
    """Decision threshold on an arousal score maximising binary UAR (balanced accuracy); ties go to
    the threshold nearest 0."""
    grid = np.round(np.linspace(-0.9, 0.9, 181), 4)
    u = np.array([uar(a, (score > t).astype(int), 2) for t in grid])
    best = np.flatnonzero(u >= u.max() - 1e-12)
    return float(grid[best[np.argmin(np.abs(grid[best]))]])


def choose_arousal_rule(
    scores: dict[float, np.ndarray], a: np.ndarray
) -> tuple[float, float, float]:
    """(head weight, threshold, UAR): the arousal head weight (keys of `scores`, each the arousal
    score at that weight) and decision threshold with the best balanced accuracy on `a`; ties go to
    the smaller weight."""
    best = (0.0, 0.0, -1.0)
    for w in sorted(scores):
        t = choose_arousal_threshold(scores[w], a)
        u = uar(a, (scores[w] > t).astype(int), 2)
        if u > best[2] + 1e-9:
            best = (w, t, u)
    return best


def arousal_cv(
    oof, T: float, cfg: Config, key: str = "logp32"
) -> tuple[dict, dict, tuple[float, float]]:
    """Cross-fitted arousal decisions: held-out fold f is decided with the head weight and threshold
    chosen on the other folds' out-of-fold scores (16k and phone pooled), so no fold's rule saw its
    own clips. Returns ({cond: pooled UAR}, {cond: {fold: UAR}}, (head weight, threshold) chosen on
    all folds for the shipped model)."""
    sc, ar, fo = {}, {}, {}
    for c, o in oof.items():
        ma = o["ar"] >= 0
        p = apply_temperature(o[key], T)
        sc[c] = {
            w: arousal_from_probs(p, o["arh"], w, cfg.arousal_method)[ma]
            for w in cfg.arousal_head_weights
        }
        ar[c], fo[c] = o["ar"][ma], o["fold"][ma]
    all_a, all_f = (np.concatenate([d[c] for c in oof]) for d in (ar, fo))
    all_s = {w: np.concatenate([sc[c][w] for c in oof]) for w in cfg.arousal_head_weights}
    pred = {c: np.zeros(len(ar[c]), dtype=int) for c in oof}
    for f in np.unique(all_f):
        rest = all_f != f
        w, t, _ = choose_arousal_rule({k: v[rest] for k, v in all_s.items()}, all_a[rest])
        for c in oof:
            pred[c][fo[c] == f] = (sc[c][w][fo[c] == f] > t).astype(int)
    pooled = {c: uar(ar[c], pred[c], 2) for c in oof}
    per_fold = {
        c: {int(f): uar(ar[c][fo[c] == f], pred[c][fo[c] == f], 2) for f in np.unique(fo[c])}
        for c in oof
    }
    w, t, _ = choose_arousal_rule(all_s, all_a)
    return pooled, per_fold, (w, t)


def confusion(y, p):
    cm = np.zeros((N_CLS, N_CLS), dtype=int)
    for t, q in zip(y, p, strict=True):
        cm[t, q] += 1
    return cm
