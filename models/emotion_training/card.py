"""The model card (JSON and Markdown) and the training report plot."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from appliance.emotion import model as E

from .channel import EVAL_VARIANTS
from .config import CALL_SIZE, DATA_LICENCE_RAVDESS, LABELS, N_CLS, Config

LATENCY_NOTE = (
    "median over 5 interleaved rounds, 1 thread, 2-core x86 build box shared with other work; "
    "total = features + speech embedding + normalisation + ONNX"
)


def _architecture(cfg: Config, final: Any) -> dict:
    members, linear, spec = final.members, final.linear, final.spec
    n_names = len(spec["feature_names"])
    n_params = sum(int(np.count_nonzero(w[k])) for w in members for k in w) + sum(
        int(np.count_nonzero(linear[k])) + N_CLS for k in ("W", "W8") if k in linear
    )
    return {
        "type": "MLP ensemble + shrinkage LDA on utterance statistics"
        + (" and a Whisper tiny.en encoder embedding" if spec.get("embedding") else ""),
        "members": cfg.members,
        "hidden": list(cfg.hidden),
        "parameters": n_params,
        "linear_member": "shrinkage LDA (uniform priors; shrinkage 'auto' = Ledoit-Wolf) on the causal z-scores"
        + (
            f" (one for 8 kHz input, shrinkage {cfg.linear_shrinkage_8k}, one for 16 kHz input, "
            f"shrinkage {cfg.linear_shrinkage_16k}; is_8k picks one)"
            if "W8" in linear
            else ""
        )
        + f", blended with weight {cfg.linear_weight} in probability space",
        "inputs": f"{n_names} raw features -> {final.Z.shape[1]} model inputs"
        + (
            ""
            if cfg.global_inputs
            else f" (the MLPs and the LDA use the {n_names} causal z-scores + is_8k; the globally "
            "scaled branch has zero weight)"
        ),
        "heads": "7 emotion logits (temperature-scaled softmax), intensity (sigmoid), arousal high/low (sigmoid, auxiliary)",
    }


def _training(cfg: Config, manifest: Path, clips: list, quick: bool) -> dict:
    ravdess = "ravdess" in str(manifest).lower()
    return {
        "manifest": str(manifest),
        "n_clips": len(clips),
        "n_groups": len({c.group for c in clips}),
        "channel_variants": list(cfg.variants),
        "pseudo_call_size": CALL_SIZE,
        "orderings": cfg.orderings,
        "epochs": cfg.epochs,
        "quick": quick,
        "duration_s": None,
        "data": (
            "RAVDESS speech (Livingstone & Russo 2018, doi:10.5281/zenodo.1188976), actors 01-20"
            if ravdess
            else str(manifest.name)
        ),
        "data_licence": DATA_LICENCE_RAVDESS if ravdess else "as licensed by the site",
    }


def _licence_note(manifest: Path) -> str:
    if "ravdess" in str(manifest).lower():
        return (
            "Trained on RAVDESS (CC BY-NC-SA 4.0): the model inherits non-commercial, share-alike, "
            "attribution terms. A commercial deployment must retrain on data it is licensed for: "
            "`appliance train-emotion --data MANIFEST --out DIR`."
        )
    return "Trained on the site's own data."


def _cv_protocol(cfg: Config) -> str:
    return (
        f"{cfg.folds}-fold CV grouped by speaker; held-out clips scored in pseudo-calls of ~{CALL_SIZE} "
        "shuffled clips of one speaker with the causal running normalisation, through the exported ONNX "
        "(fp32 and static-QDQ int8 per fold); 16k = clip as recorded; phone = 300-3400 Hz, 8 kHz, "
        "line noise, gain, G.711 mu-law (fixed seed)"
    )


def _calibration(summary: dict) -> dict | None:
    if not summary:
        return None
    return {
        "method": "temperature scaling on out-of-fold logits",
        "temperature": summary["temperature"],
        "ece_before": {c: summary[c]["ece_before"] for c in EVAL_VARIANTS},
        "ece_after": {c: summary[c]["ece_after"] for c in EVAL_VARIANTS},
    }


def _quantisation(summary: dict, lat: dict, sizes: tuple[int, int]) -> dict:
    def uars(key: str) -> dict | None:
        return {c: summary[c][key] for c in EVAL_VARIANTS} if summary else None

    return {
        "method": "onnxruntime quantize_static, QDQ, per-channel int8 weights, uint8 activations, MatMul only",
        "fp32": {"uar": uars("uar"), "latency_1s_window": lat["fp32"], "bytes": sizes[0]},
        "int8": {"uar": uars("uar_int8"), "latency_1s_window": lat["int8"], "bytes": sizes[1]},
        "latency_note": LATENCY_NOTE,
    }


def _outputs(cfg: Config, summary: dict) -> dict:
    return {
        "confidence": "calibrated probability of the label (temperature scaling)",
        "uncertain": f"confidence < {cfg.uncertain_threshold} (the label is more likely wrong than right)",
        "intensity": "sigmoid head trained on RAVDESS intensity: neutral/calm 0, normal 0.5, strong 1",
        "valence": "expectation of circumplex valence over the calibrated class probabilities",
        "arousal": arousal_text(
            cfg, summary.get("arousal_head_weight", 0.0), summary.get("arousal_threshold", 0.0)
        ),
    }


def build_card(
    cfg: Config,
    final: Any,
    manifest: Path,
    clips: list,
    files: tuple[Path, Path],
    lat: dict,
    shipped: tuple[str, str],
    folds_res: list,
    summary: dict,
    quick: bool,
) -> dict:
    """The machine-readable model card (`model_card.json`) of an exported model."""
    f32, i8 = files
    choice, why = shipped
    sizes = (f32.stat().st_size, i8.stat().st_size)
    return {
        "name": "appliance-emotion",
        "model_file": f32.name if choice == "fp32" else i8.name,
        "variants": {"fp32": f32.name, "int8": i8.name},
        "files": {f32.name: E.sha256_file(f32), i8.name: E.sha256_file(i8)},
        "sizes_bytes": {f32.name: sizes[0], i8.name: sizes[1]},
        "shipped_variant": choice,
        "shipped_reason": why,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "spec": final.spec,
        "architecture": _architecture(cfg, final),
        "training": _training(cfg, manifest, clips, quick),
        "licence_note": _licence_note(manifest),
        "cv": {"folds": folds_res, "summary": summary, "protocol": _cv_protocol(cfg)},
        "calibration": _calibration(summary),
        "quantisation": _quantisation(summary, lat, sizes),
        "outputs": _outputs(cfg, summary),
    }


def plot_report(path: Path, folds, summary) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: report plot skipped"
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    for ax, c in zip(axes[:2], ("16k", "phone"), strict=True):
        cm = np.array(summary[c]["confusion"], dtype=float)
        cmn = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(cmn, cmap="Blues", vmin=0, vmax=1)
        for i in range(N_CLS):
            for j in range(N_CLS):
                ax.text(
                    j,
                    i,
                    f"{cmn[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if cmn[i, j] > 0.5 else "black",
                )
        ax.set_xticks(range(N_CLS), LABELS, rotation=45, ha="right")
        ax.set_yticks(range(N_CLS), LABELS)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{c}: UAR {summary[c]['uar']:.3f} (speaker-held-out CV)")
    ax = axes[2]
    x = np.arange(len(folds))
    ax.bar(x - 0.2, [f["16k"]["uar"] for f in folds], 0.4, label="16 kHz")
    ax.bar(x + 0.2, [f["phone"]["uar"] for f in folds], 0.4, label="phone 8 kHz mu-law")
    ax.axhline(1 / N_CLS, color="grey", ls=":", label="chance")
    ax.set_xticks(x, [f"fold {f['fold']}" for f in folds])
    ax.set_ylim(0, 1)
    ax.set_ylabel("7-class UAR")
    ax.legend(loc="lower right")
    ax.set_title("per-fold UAR")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def arousal_text(cfg: Config, head_weight: float, threshold: float) -> str:
    score = (
        "2 P(high-arousal class) - 1 (calibrated probabilities of "
        + ", ".join(E.HIGH_AROUSAL_LABELS)
        + " summed)"
        if cfg.arousal_method == "class_sum"
        else "circumplex arousal expectation over the calibrated probabilities"
    )
    if head_weight > 0:
        score = (
            f"{1 - head_weight:g} x {score} + {head_weight:g} x "
            "(2 P(high) - 1) from the trained arousal head"
        )
    return (
        f"{score}, rescaled piecewise-linearly so that the decision threshold {threshold:+.3f} "
        "(chosen for balanced accuracy on out-of-fold scores) maps to 0: arousal > 0 = high "
        "(angry, happy, fearful, surprised, disgust), < 0 = low (neutral, calm, sad)"
    )
