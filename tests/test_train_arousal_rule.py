"""Training-side arousal decision rule (models/emotion_training/): weight and threshold chosen on
out-of-fold scores, cross-fitted so that no held-out fold's rule saw its own clips."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip(
    "scipy"
)  # models/emotion_training/channel.py (training extra, also pulled in by librosa)
import emotion_training as T  # noqa: E402  (models/ is on pytest's pythonpath)


def _fake_oof(rng, n_per_fold=120, folds=4, head_quality=3.0, flip_fold=None):
    """OOF arrays for two conditions: class probabilities that carry arousal weakly and an arousal
    head that carries it strongly (scores through `arousal_value`, as the runtime computes them)."""
    oof = {}
    high = [T.LABELS.index(k) for k in ("happy", "angry", "fearful", "disgust", "surprised")]
    low = [T.LABELS.index(k) for k in ("neutral", "sad")]
    for cond in ("16k", "phone"):
        n = n_per_fold * folds
        ar = rng.integers(0, 2, n)
        fold = np.repeat(np.arange(folds), n_per_fold)
        y = np.where(ar == 1, rng.choice(high, n), rng.choice(low, n))
        logits = rng.normal(0, 1.0, (n, 7))
        logits[np.arange(n), y] += 0.6
        head_logit = head_quality * (ar - 0.5) + rng.normal(0, 1.0, n)
        if flip_fold is not None:  # a held-out fold whose labels contradict its scores
            m = fold == flip_fold
            ar[m] = 1 - ar[m]
        oof[cond] = {
            "y": y,
            "ar": ar,
            "logp32": logits - np.log(np.exp(logits).sum(1, keepdims=True)),
            "arh": 1 / (1 + np.exp(-head_logit)),
            "fold": fold,
        }
        oof[cond]["logp8"] = oof[cond]["logp32"]
    return oof


def test_choose_arousal_rule_prefers_the_informative_score():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 2000)
    good = (a - 0.5) + rng.normal(0, 0.3, a.size) + 0.4  # informative but offset: threshold ~0.4
    bad = rng.normal(0, 1, a.size)
    w, t, u = T.choose_arousal_rule({0.0: np.clip(bad, -1, 1), 1.0: np.clip(good, -1, 1)}, a)
    assert w == 1.0
    assert 0.2 < t < 0.6
    assert u > 0.85
    # ties go to the smaller weight
    w, _, _ = T.choose_arousal_rule({0.0: good, 0.5: good.copy()}, a)
    assert w == 0.0


def test_arousal_cv_picks_the_head_when_it_is_better():
    oof = _fake_oof(np.random.default_rng(1))
    cfg = T.Config()
    pooled, per_fold, (w, t) = T.arousal_cv(oof, 1.0, cfg)
    assert w >= 0.5
    assert -0.9 <= t <= 0.9
    assert all(0.8 < pooled[c] <= 1.0 for c in oof)
    assert set(per_fold["16k"]) == {0, 1, 2, 3}


def test_arousal_cv_is_cross_fitted():
    """A fold whose labels are inverted is decided with a rule fitted on the other folds only, so it
    scores far below chance; a rule that had seen it would have been pulled towards it."""
    oof = _fake_oof(np.random.default_rng(2), flip_fold=3)
    pooled, per_fold, _ = T.arousal_cv(oof, 1.0, T.Config())
    for c in oof:
        assert per_fold[c][3] < 0.25
        assert min(per_fold[c][f] for f in (0, 1, 2)) > 0.8
