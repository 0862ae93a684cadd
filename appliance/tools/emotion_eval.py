"""`appliance emotion-eval`: score a labelled manifest through the live analysis path.

Each row is read (soundfile if installed, else the WAV reader), resampled only if it is not 8 or
16 kHz, and scored by `EmotionModel.infer` with a causal `ChannelState`: rows sharing a `call`
value share one state in file order (without that column every file is its own call). Labels come
only from the manifest (`emotion`, optional `arousal` high/low), never from file names.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from appliance.types import EMOTION_LABELS

# Manifest emotion names -> model labels (RAVDESS names, EmoDB's English-derived names).
# None: a known emotion outside the model's set (kept for arousal metrics, left out of class metrics).
LABEL_ALIASES: dict[str, str | None] = {
    "neutral": "neutral",
    "calm": "neutral",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "angry": "angry",
    "anger": "angry",
    "fearful": "fearful",
    "fear": "fearful",
    "anxiety": "fearful",
    "disgust": "disgust",
    "surprised": "surprised",
    "surprise": "surprised",
    "boredom": None,
}
HIGH_AROUSAL = {
    "angry",
    "anger",
    "happy",
    "happiness",
    "joy",
    "fearful",
    "fear",
    "anxiety",
    "surprised",
    "surprise",
    "disgust",
}
LOW_AROUSAL = {"neutral", "calm", "sad", "sadness", "boredom"}


def normalise_label(name: str | None) -> str | None:
    """Model label for a manifest emotion name, or None when it is outside the model's set."""
    if not name:
        return None
    return LABEL_ALIASES.get(name.strip().lower())


def arousal_of(emotion: str | None, arousal: str | None = None) -> int | None:
    """1 = high, 0 = low, None = unknown; an explicit `arousal` column wins."""
    if arousal:
        a = arousal.strip().lower()
        if a in ("high", "1", "+"):
            return 1
        if a in ("low", "0", "-"):
            return 0
    if emotion:
        e = emotion.strip().lower()
        if e in HIGH_AROUSAL:
            return 1
        if e in LOW_AROUSAL:
            return 0
    return None


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 audio at 8 or 16 kHz (other rates are resampled to 16 kHz)."""
    try:
        import soundfile as sf

        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
    except ImportError:
        from appliance.capture.wav import read_wav

        rec = read_wav(path)
        x, sr = np.mean(np.stack(rec.channels), axis=0), rec.sample_rate
    x = np.ascontiguousarray(x, dtype=np.float32)
    if sr not in (8000, 16000):
        target = 8000 if sr < 16000 else 16000
        x, sr = resample(x, sr, target), target
    return x, int(sr)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    try:
        from appliance.capture.resample import resample as _res
    except ImportError:  # fallback: windowed-sinc-free linear interpolation after a moving average
        n_out = int(round(len(x) * sr_out / sr_in))
        if sr_out < sr_in:
            k = int(np.ceil(sr_in / sr_out))
            x = np.convolve(x, np.ones(k) / k, mode="same")
        t = np.arange(n_out) * (sr_in / sr_out)
        return np.interp(t, np.arange(len(x)), x).astype(np.float32)
    return np.asarray(_res(x, sr_in, sr_out), dtype=np.float32)


def read_manifest(manifest: str | Path) -> list[dict]:
    manifest = Path(manifest)
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "path" not in rows[0]:
        raise ValueError(f"{manifest}: needs a 'path' column")
    return rows


def _uar(y: list[int], p: list[int], n_classes: int) -> float | None:
    recalls = []
    for c in range(n_classes):
        idx = [i for i, t in enumerate(y) if t == c]
        if idx:
            recalls.append(sum(p[i] == c for i in idx) / len(idx))
    return float(np.mean(recalls)) if recalls else None


def evaluate(manifest: str | Path, model=None) -> dict:
    """Score every manifest row like live analysis; metrics are None when no labels are given."""
    from appliance.emotion.model import EmotionModel

    manifest = Path(manifest)
    model = model or EmotionModel.load()
    rows = read_manifest(manifest)
    base = manifest.parent
    states: dict[str, object] = {}
    preds = []
    y_true, y_pred, a_true, a_pred = [], [], [], []
    labels = list(EMOTION_LABELS)
    confusion = np.zeros((len(labels), len(labels)), dtype=int)
    for i, row in enumerate(rows):
        call = (row.get("call") or "").strip()
        key = call if call else f"__row{i}"
        state = states.get(key)
        if state is None:
            state = states[key] = model.new_state()
        x, sr = read_audio(base / row["path"])
        res = model.infer(x, sr, state)
        preds.append(
            {
                "path": row["path"],
                "label": res.label,
                "confidence": round(res.confidence, 4),
                "intensity": round(res.intensity, 4),
                "arousal": round(res.arousal, 4),
                "valence": round(res.valence, 4),
                "uncertain": res.uncertain,
            }
        )
        emo = row.get("emotion")
        lab = normalise_label(emo)
        if lab is not None:
            t, p = labels.index(lab), labels.index(res.label)
            y_true.append(t)
            y_pred.append(p)
            confusion[t, p] += 1
        ar = arousal_of(emo, row.get("arousal"))
        if ar is not None:
            a_true.append(ar)
            a_pred.append(1 if res.arousal > 0 else 0)
    n = len(y_true)
    per_class = None
    if n:
        per_class = {}
        for c, name in enumerate(labels):
            support = int(confusion[c].sum())
            per_class[name] = {
                "support": support,
                "recall": float(confusion[c, c] / support) if support else None,
                "precision": float(confusion[c, c] / confusion[:, c].sum())
                if confusion[:, c].sum()
                else None,
            }
    return {
        "n": len(rows),
        "n_labelled": n,
        "accuracy": float(np.mean(np.array(y_true) == np.array(y_pred))) if n else None,
        "uar": _uar(y_true, y_pred, len(labels)) if n else None,
        "arousal_uar": _uar(a_true, a_pred, 2) if a_true else None,
        "per_class": per_class,
        "confusion": confusion.tolist() if n else None,
        "labels": labels,
        "predictions": preds,
        "model": getattr(model, "info", {}),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="appliance emotion-eval", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--manifest", required=True, help="CSV with path[,emotion,arousal,call,speaker]"
    )
    ap.add_argument("--model", default=None, help="model directory or card (default: bundled)")
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = ap.parse_args(argv)
    from appliance.emotion.model import EmotionModel, ModelError

    try:
        model = EmotionModel.load(args.model)
        res = evaluate(args.manifest, model)
    except (ModelError, OSError, ValueError) as exc:
        print(f"emotion-eval: {exc}", file=sys.stderr)
        return 2
    if args.json:
        out = {
            k: res[k]
            for k in (
                "n",
                "accuracy",
                "uar",
                "arousal_uar",
                "per_class",
                "confusion",
                "labels",
                "predictions",
            )
        }
        print(json.dumps(out, indent=1))
        return 0
    if res["uar"] is None and res["arousal_uar"] is None:
        for p in res["predictions"]:
            print(
                f"{p['path']}\t{p['label']}\t{p['confidence']:.2f}\tarousal={p['arousal']:+.2f}"
                f"\tvalence={p['valence']:+.2f}{'  (uncertain)' if p['uncertain'] else ''}"
            )
        return 0
    print(f"n={res['n']} labelled={res['n_labelled']}")
    if res["uar"] is not None:
        print(f"accuracy={res['accuracy']:.3f}  UAR={res['uar']:.3f}")
    if res["arousal_uar"] is not None:
        print(f"arousal UAR={res['arousal_uar']:.3f}")
    if res["per_class"]:
        for name, d in res["per_class"].items():
            if d["support"]:
                print(f"  {name:10s} recall={d['recall']:.3f}  n={d['support']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
