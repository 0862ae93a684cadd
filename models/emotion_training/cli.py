"""Command line of the training recipe (`models/train_emotion.py`, `appliance train-emotion`)."""

from __future__ import annotations

import argparse
import os

from .config import Config
from .pipeline import train

DESCRIPTION = "Train, cross-validate, calibrate, quantise and package the appliance emotion model."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=DESCRIPTION)
    ap.add_argument("--data", required=True, help="manifest CSV")
    ap.add_argument("--out", required=True, help="output directory (model files + card)")
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument(
        "--quick", action="store_true", help="fewer variants/members/epochs (smoke test)"
    )
    ap.add_argument(
        "--cache", default=None, help="feature cache dir (default models/.cache/emotion)"
    )
    ap.add_argument("--no-cv", action="store_true", help="skip cross-validation (no calibration)")
    ap.add_argument(
        "--anchors",
        default=None,
        help="manifest of neutral anchor utterances (python -m emotion_training.anchors)",
    )
    ap.add_argument(
        "--no-embedding-means",
        action="store_true",
        help="members use the embedding's standard deviations only, not its means",
    )
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    cfg = Config.quick(a.folds) if a.quick else Config(folds=a.folds)
    cfg.embedding_mean_inputs = not a.no_embedding_means
    train(
        a.data,
        a.out,
        folds=a.folds,
        quick=a.quick,
        cache_dir=a.cache,
        skip_cv=a.no_cv,
        anchors=a.anchors,
        cfg=cfg,
    )
    return 0
