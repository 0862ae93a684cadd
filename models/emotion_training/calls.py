"""Calls and the causal per-call normalisation, exactly as `appliance.emotion.ChannelState` does it
live: priors fitted on the training speakers, pseudo-calls, the normalised training set."""

from __future__ import annotations

import numpy as np

from appliance.emotion import model as E

from .config import CALL_SIZE, Config
from .data import Clip


def fit_priors(
    feats: dict[str, np.ndarray], clips: list[Clip], idx: np.ndarray
) -> dict[int, E.NormPrior]:
    """Per sample rate: global mean, pooled within-(speaker, variant) variance, total variance."""
    by_sr: dict[int, list[np.ndarray]] = {}
    within: dict[int, list[np.ndarray]] = {}
    groups = np.array([clips[i].group for i in idx])
    for _v, F in feats.items():
        Fi = F[idx]
        for sr in np.unique(Fi[:, -1]).astype(int):
            m = Fi[:, -1] == sr
            X = Fi[m, :-1]
            by_sr.setdefault(sr, []).append(X)
            g = groups[m]
            for u in np.unique(g):
                Xg = X[g == u]
                within.setdefault(sr, []).append(Xg - Xg.mean(0))
    priors = {}
    for sr in by_sr:
        X = np.concatenate(by_sr[sr])
        W = np.concatenate(within[sr])
        priors[int(sr)] = E.NormPrior(X.mean(0), W.var(0) + 1e-9, X.var(0) + 1e-9)
    if len(priors) == 1:  # a site with only one rate: use it for both
        (only,) = priors.values()
        priors = {8000: only, 16000: only} | priors
    return priors


def make_calls(clips: list[Clip], idx: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
    """Real calls in file order where the manifest has them, else shuffled pseudo-calls per speaker."""
    calls: dict[str, list[int]] = {}
    loose: dict[str, list[int]] = {}
    for i in idx:
        c = clips[i]
        (calls.setdefault(c.call, []) if c.call else loose.setdefault(c.group, [])).append(int(i))
    out = list(calls.values())
    for g in sorted(loose):
        items = np.array(loose[g])
        rng.shuffle(items)
        n_calls = max(1, int(round(len(items) / CALL_SIZE)))
        out += [list(map(int, a)) for a in np.array_split(items, n_calls)]
    return out


def normalise_calls(F: np.ndarray, calls: list[list[int]], priors) -> tuple[np.ndarray, np.ndarray]:
    """Causal normalisation exactly as `ChannelState` does it live. Returns (Z rows, clip index)."""
    Z, ix = [], []
    for call in calls:
        st = E.ChannelState(priors)
        for i in call:
            sr = int(F[i, -1])
            Z.append(st.normalise(F[i, :-1], sr))
            st.update(F[i, :-1], sr)
            ix.append(i)
    return np.stack(Z), np.array(ix)


def training_set(feats, clips, idx, priors, cfg: Config, rng) -> tuple[np.ndarray, np.ndarray]:
    Zs, ixs = [], []
    for v in cfg.variants:
        for _ in range(cfg.orderings):
            Z, ix = normalise_calls(feats[v], make_calls(clips, idx, rng), priors)
            Zs.append(Z)
            ixs.append(ix)
    return np.concatenate(Zs), np.concatenate(ixs)
