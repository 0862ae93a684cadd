#!/usr/bin/env python3
"""Train, cross-validate, calibrate, quantise and package the appliance emotion model.

    python models/train_emotion.py --data ../shared/data/ravdess/manifest.csv --out models/emotion

Manifest CSV: `path` (relative to the manifest), `emotion` (RAVDESS/EmoDB names), optional
`speaker` (CV folds are grouped by it), `call` (rows of one call share a causal normalisation
state, in file order; without it pseudo-calls of ~12 shuffled clips per speaker are formed),
`intensity` (normal/strong). Features come from the runtime path (`appliance.emotion`, which uses
`appliance.features`), so training and serving cannot drift apart.

The recipe lives in the `emotion_training` package next to this file (Python puts a script's
folder first on its path, so it imports without path edits); this file is its command line.
Training-only dependencies: torch (CPU), scipy, sklearn, soundfile, tqdm, onnx,
onnxruntime(.quantization), matplotlib (optional: the report plot is skipped without it).
"""

from emotion_training.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
