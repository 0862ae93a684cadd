"""Training/serving parity: the training script's cached inputs are what the live path computes.

The training script extracts features and speech embeddings in forked workers and caches them; the
CV scores those cached rows. The box scores audio with `EmotionModel.infer`. They must agree
exactly, or the CV numbers describe a model the box does not run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RAVDESS = ROOT.parent / "shared" / "data" / "ravdess"
MODEL_DIR = ROOT / "models" / "emotion"

pytest.importorskip("scipy")
pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(not (RAVDESS / "manifest.csv").exists(), reason="../shared RAVDESS absent"),
]
import emotion_training as T  # noqa: E402  (models/ is on pytest's pythonpath)


def test_cached_training_rows_equal_the_live_path(tmp_path):
    from appliance.emotion.model import EmotionModel

    card = json.loads((MODEL_DIR / "model_card.json").read_text())
    spec = card["spec"]
    clips = T.load_manifest(RAVDESS / "manifest.csv")[:8]
    feats = T.extract(clips, ["clean16", "phone8a"], tmp_path / "cache", 2, spec["embedding"])
    # a second call reads the cache and must return the same rows
    again = T.extract(clips, ["clean16", "phone8a"], tmp_path / "cache", 1, spec["embedding"])
    assert all(np.array_equal(feats[v], again[v]) for v in feats)

    model = EmotionModel.load()
    priors = {int(k): T.E.NormPrior.from_json(v) for k, v in spec["normalisation"].items()}
    for variant in ("clean16", "phone8a"):
        calls = [list(range(len(clips)))]
        Z, ix = T.normalise_calls(feats[variant], calls, priors)
        P, inten, arh = model.run_features(Z)
        st = model.new_state()
        for k, i in enumerate(ix):
            live = model.infer(*T.variant_audio(*T.variant_job(clips[i], variant)), st)
            cached = model.result(P[k], float(inten[k]), float(arh[k]))
            assert live.label == cached.label
            assert live.confidence == pytest.approx(cached.confidence, abs=1e-5)
            assert live.arousal == pytest.approx(cached.arousal, abs=1e-5)
