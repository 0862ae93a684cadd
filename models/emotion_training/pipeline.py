"""The whole recipe: features -> speaker-grouped CV -> calibration -> final model -> ONNX fp32/int8
-> latency -> model card."""

from __future__ import annotations

import csv
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.emotion import model as E
from appliance.emotion.embedding import embedding_names
from appliance.emotion.policy import BACKCHANNEL_WORDS, MAX_BACKCHANNEL_WORDS, fit_ood

from .calls import fit_priors, training_set
from .card import build_card, plot_report
from .card_md import render_card_md
from .config import LABELS, MODEL_VERSION, Config
from .cv import cross_validate, ood_inputs, summarise
from .data import Clip, embedding_spec, extract, load_manifest
from .export import build_onnx, quantise
from .latency import latency
from .network import train_linear, train_members

DEFAULT_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "emotion"


@dataclass
class FinalModel:
    """The model trained on every clip, before export."""

    members: list
    linear: dict
    priors: dict
    Z: np.ndarray  # its training inputs (the int8 calibration draws from them)
    spec: dict


def _warn_without_speakers(manifest: Path, log) -> None:
    with manifest.open(newline="") as fh:
        header = next(csv.reader(fh))
    if "speaker" not in header:
        log(
            "note: no 'speaker' column - CV folds are grouped by 'call' (or by file), so one speaker can appear "
            "on both sides of a fold and the CV numbers are optimistic; add a speaker column for honest CV"
        )


def model_spec(
    cfg: Config, priors: dict, dim: int, temperature: float, summary: dict, emb_spec: dict | None
) -> dict:
    """The card's `spec`: everything the runtime needs to reproduce the training-time inputs and
    decisions (its digest is embedded in the ONNX metadata)."""
    names = E.feature_names() + (embedding_names(emb_spec["dim"]) if emb_spec else [])
    spec = {
        "version": MODEL_VERSION,
        "feature_version": E.FEATURE_VERSION,
        "labels": LABELS,
        "feature_names": names,
        "sample_rates": [8000, 16000],
        "onnx_input": {
            "name": "features",
            "dim": int(dim),
            "layout": "[z-scored (causal per call) features, globally scaled features, is_8k]",
        },
        "onnx_outputs": ["probs", "intensity", "arousal_high"],
        "normalisation": {str(sr): p.to_json() for sr, p in sorted(priors.items())},
        "temperature": temperature,
        "uncertain_threshold": cfg.uncertain_threshold,
        "circumplex": {k: list(v) for k, v in E.CIRCUMPLEX.items()},
        "arousal_head_weight": summary.get("arousal_head_weight", 0.0),
        "arousal_method": cfg.arousal_method,
        "arousal_high_labels": list(E.HIGH_AROUSAL_LABELS),
        "arousal_threshold": summary.get("arousal_threshold", 0.0),
        "deploy_prior": [float(v) for v in cfg.deploy_prior],
        "abstain": {
            "min_duration_s": cfg.min_evidence_s,
            "backchannel_max_words": MAX_BACKCHANNEL_WORDS,
            "backchannel_words": sorted(BACKCHANNEL_WORDS),
        },
    }
    if emb_spec:
        spec["embedding"] = emb_spec
    return spec


def train_final(
    feats: dict, clips: list[Clip], cfg: Config, summary: dict, emb_spec: dict | None
) -> FinalModel:
    """Priors, MLPs and LDA on every clip; the spec with the CV's temperature and arousal rule."""
    all_idx = np.arange(len(clips))
    priors = fit_priors({v: feats[v] for v in cfg.variants}, clips, all_idx)
    Z, ix = training_set(feats, clips, all_idx, priors, cfg, np.random.default_rng(cfg.seed))
    members = train_members(Z, ix, clips, cfg, desc="final model")
    linear = train_linear(Z, ix, clips, cfg)
    T = summary.get("temperature", 1.0)
    spec = model_spec(cfg, priors, Z.shape[1], T, summary, emb_spec)
    X = ood_inputs(Z, cfg)
    ood = fit_ood(X, cfg.ood_components)
    # quantiles from held-out speakers in the CV; without a CV, in-sample ones (optimistic)
    q = summary.get("ood") or {
        "q50": float(np.quantile(ood.score(X), 0.5)),
        "q99": float(np.quantile(ood.score(X), 0.99)),
    }
    ood = type(ood)(ood.mean, ood.components, ood.eigvals, ood.res_var, q["q50"], q["q99"])
    cols = [int(i) for i in np.flatnonzero(_ood_mask(Z, cfg))]
    spec["ood"] = ood.to_json() | {"columns": cols}
    return FinalModel(members, linear, priors, Z, spec)


def _ood_mask(Z: np.ndarray, cfg: Config) -> np.ndarray:
    from .network import z_columns

    return z_columns((Z.shape[1] - 1) // 2, cfg)


def choose_variant(summary: dict, lat32: dict, lat8: dict) -> tuple[str, str]:
    """(shipped variant, why): int8 only if it is faster than fp32 and within 1 UAR point."""
    if not summary:
        return "fp32", "no CV run"
    d16 = summary["16k"]["uar"] - summary["16k"]["uar_int8"]
    dph = summary["phone"]["uar"] - summary["phone"]["uar_int8"]
    faster = (
        lat8["16k"]["onnx_ms"] < lat32["16k"]["onnx_ms"]
        and lat8["phone"]["onnx_ms"] < lat32["phone"]["onnx_ms"]
    )
    if faster and max(d16, dph) <= 0.01:
        return "int8", "int8 measured faster than fp32 and within 1 UAR point"
    if not faster:
        return "fp32", "int8 not faster than fp32 on this CPU"
    return "fp32", f"int8 loses {100 * max(d16, dph):.1f} UAR points"


def export(final: FinalModel, out_dir: Path, clips: list[Clip]) -> tuple[Path, Path, dict]:
    """fp32 and static-QDQ int8 ONNX files in `out_dir`, and their latency."""
    f32, i8 = out_dir / "emotion-fp32.onnx", out_dir / "emotion-int8.onnx"
    sha = E.spec_digest(final.spec)
    build_onnx(final.members, final.linear, final.Z.shape[1], final.spec["temperature"], sha, f32)
    Z = final.Z
    sub = np.random.default_rng(0).choice(len(Z), size=min(2000, len(Z)), replace=False)
    quantise(f32, i8, Z[sub])
    lat = latency({"fp32": f32, "int8": i8}, clips, final.priors, final.spec.get("embedding"))
    return f32, i8, lat


def anchor_sources(manifest: Path) -> dict:
    """The card's record of the neutral anchors: recordings (relative to the shared data folder,
    so the realism benchmark can leave them out) and utterance count."""
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {
        "manifest": str(manifest),
        "utterances": len(rows),
        "recordings": sorted({r["source"] for r in rows if r.get("source")}),
        "label": "neutral",
    }


def train(
    manifest: str | Path,
    out_dir: str | Path,
    folds: int = 6,
    quick: bool = False,
    cache_dir: str | Path | None = None,
    skip_cv: bool = False,
    log=print,
    anchors: str | Path | None = None,
    cfg: Config | None = None,
) -> dict:
    """Full pipeline: features -> speaker-grouped CV -> calibration -> final model -> ONNX fp32/int8
    -> latency -> model card. Returns the card dict. `anchors`: a manifest of neutral anchor
    utterances (`emotion_training.anchors`), trained on and kept out of the CV metrics."""
    t_start = time.time()
    manifest, out_dir = Path(manifest).resolve(), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg is None:
        cfg = Config.quick(folds) if quick else Config(folds=folds)
    cache = Path(cache_dir) if cache_dir else DEFAULT_CACHE
    clips = load_manifest(manifest)
    if anchors:
        clips += load_manifest(Path(anchors).resolve(), source="anchor")
    log(
        f"{len(clips)} clips, {len({c.group for c in clips})} speakers/groups; variants {cfg.variants}"
    )
    _warn_without_speakers(manifest, log)
    emb_spec = embedding_spec(cfg.embedding_min_window_s) if cfg.embedding_min_window_s else None
    feats = extract(clips, cfg.variants, cache, cfg.workers, emb_spec)
    folds_res, summary = [], {}
    if not skip_cv:
        work = Path(tempfile.mkdtemp(prefix="emotion-train-"))
        folds_res, oof = cross_validate(feats, clips, cfg, work)
        summary = summarise(folds_res, oof, cfg, clips)
    final = train_final(feats, clips, cfg, summary, emb_spec)
    f32, i8, lat = export(final, out_dir, clips)
    choice, why = choose_variant(summary, lat["fp32"], lat["int8"])
    card = build_card(
        cfg, final, manifest, clips, (f32, i8), lat, (choice, why), folds_res, summary, quick
    )
    if anchors:
        card["training"]["anchors"] = anchor_sources(Path(anchors))
    plot_note = (
        plot_report(out_dir / "training_report.png", folds_res, summary) if summary else "no CV"
    )
    card["report_plot"] = "training_report.png" if plot_note is None else plot_note
    card["training"]["duration_s"] = round(time.time() - t_start, 1)
    (out_dir / "model_card.json").write_text(json.dumps(card, indent=1) + "\n")
    (out_dir / "MODEL_CARD.md").write_text(render_card_md(card))
    log(f"done in {card['training']['duration_s']} s; shipped {card['model_file']} ({why})")
    return card
