"""Command line of the training recipe (`models/train_emotion.py`, `appliance train-emotion`)."""

from __future__ import annotations

import argparse
import os

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
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    train(a.data, a.out, folds=a.folds, quick=a.quick, cache_dir=a.cache, skip_cv=a.no_cv)
    return 0
