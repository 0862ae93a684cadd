"""Speaker-grouped cross-validation through the exported ONNX files, and its summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.emotion.policy import fit_ood

from .calls import fit_priors, make_calls, normalise_calls, training_set
from .channel import EVAL_VARIANTS
from .config import LABELS, N_CLS, Config
from .export import build_onnx, onnx_run, quantise
from .metrics import (
    apply_temperature,
    arousal_cv,
    arousal_from_probs,
    confusion,
    ece,
    fit_temperature,
    uar,
)
from .network import train_linear, train_members, z_columns

_FOLD_JOB: dict = {}  # what the fold workers share (inherited through fork, not pickled)


def ood_inputs(Z: np.ndarray, cfg: Config) -> np.ndarray:
    """The columns the out-of-distribution model measures: the causal z-scores the members use."""
    nf = (Z.shape[1] - 1) // 2
    return Z[:, :nf][:, z_columns(nf, cfg)]


def _run_fold(f: int) -> tuple[dict, dict]:
    """Train on every fold but `f`, score fold `f` through fp32 and int8 ONNX in pseudo-calls.
    Returns (per-fold row, {condition: out-of-fold arrays})."""
    feats, clips, cfg, work, fold, progress = (
        _FOLD_JOB[k] for k in ("feats", "clips", "cfg", "work", "fold", "progress")
    )
    groups = np.array([c.group for c in clips])
    k = int(fold.max()) + 1
    tr = np.where(fold != f)[0]
    te = np.where(fold == f)[0]
    rng = np.random.default_rng(cfg.seed + f)
    priors = fit_priors({v: feats[v] for v in cfg.variants}, clips, tr)
    Z, ix = training_set(feats, clips, tr, priors, cfg, rng)
    members = train_members(Z, ix, clips, cfg, desc=f"fold {f + 1}/{k}", progress=progress)
    linear = train_linear(Z, ix, clips, cfg)
    dim = Z.shape[1]
    p32, p8 = work / f"fold{f}-fp32.onnx", work / f"fold{f}-int8.onnx"
    build_onnx(members, linear, dim, 1.0, "cv", p32)
    sub = np.random.default_rng(f).choice(len(Z), size=min(2000, len(Z)), replace=False)
    quantise(p32, p8, Z[sub])
    ood = fit_ood(ood_inputs(Z, cfg), cfg.ood_components)
    row = {"fold": f + 1, "speakers": sorted(set(groups[te])), "n": int(len(te))}
    out = {}
    for cond, variant in EVAL_VARIANTS.items():
        calls = make_calls(clips, te, np.random.default_rng(1000 + f))
        Zt, ixt = normalise_calls(feats[variant], calls, priors)
        pos = np.concatenate([np.arange(len(c)) for c in calls])
        pa, inten, arh = onnx_run(p32, Zt)
        pb, _, _ = onnx_run(p8, Zt)
        anchor = np.array([clips[i].source == "anchor" for i in ixt], dtype=bool)
        # anchors are trained on but kept out of every CV metric (label -1), reported on their own
        y = np.where(anchor, -1, [clips[i].label for i in ixt])
        a = np.where(anchor, -1, [clips[i].arousal for i in ixt])
        out[cond] = {
            "anchor": anchor,
            "ood": ood.score(ood_inputs(Zt, cfg)),
            "y": y,
            "ar": a,
            "logp32": np.log(pa + 1e-9),
            "logp8": np.log(pb + 1e-9),
            "int": inten,
            "arh": arh,
            "ix": ixt,
            "fold": np.full(len(ixt), f),
            "pos": pos,
        }
        m = y >= 0
        ma = a >= 0
        row[cond] = {
            "uar": uar(y[m], pa.argmax(1)[m], N_CLS),
            "uar_int8": uar(y[m], pb.argmax(1)[m], N_CLS),
            # uncalibrated, decided at 0 (progress only; `summarise` replaces it with the
            # calibrated, cross-fitted-threshold decision)
            "arousal_uar": uar(
                a[ma],
                (arousal_from_probs(pa, arh, 0.5, cfg.arousal_method)[ma] > 0).astype(int),
                2,
            ),
            "arousal_uar_circumplex": uar(a[ma], (arousal_from_probs(pa)[ma] > 0).astype(int), 2),
            "arousal_uar_head": uar(a[ma], (arh[ma] > 0.5).astype(int), 2),
        }
    return row, out


def cross_validate(feats, clips, cfg: Config, work: Path):
    """Speaker-grouped CV; held-out clips scored in pseudo-calls through fp32 and int8 ONNX.

    Folds train in `cfg.workers` forked processes (each MLP trains on one thread), so a 2-core box
    runs two folds at once; the results do not depend on the number of workers."""
    from multiprocessing import get_context

    from tqdm import tqdm

    groups = np.array([c.group for c in clips])
    main = sorted({c.group for c in clips if c.source == "main"})
    extra = sorted({c.group for c in clips if c.source != "main"} - set(main))
    k = min(cfg.folds, len(main))
    # the main corpus's speakers take the same folds with or without anchors; anchors go round
    fold_of_group = {g: i % k for i, g in enumerate(main)} | {g: i % k for i, g in enumerate(extra)}
    fold = np.array([fold_of_group[g] for g in groups])
    workers = max(1, min(cfg.workers, k))
    _FOLD_JOB.update(feats=feats, clips=clips, cfg=cfg, work=work, fold=fold, progress=workers == 1)
    try:
        with tqdm(total=k, desc="CV folds", unit="fold") as bar:

            def done(res):
                row = res[0]
                bar.update(1)
                tqdm.write(
                    f"fold {row['fold']}: 16k UAR {row['16k']['uar']:.3f} "
                    f"(int8 {row['16k']['uar_int8']:.3f}) phone UAR {row['phone']['uar']:.3f} "
                    f"(int8 {row['phone']['uar_int8']:.3f}) "
                    f"arousal {row['16k']['arousal_uar']:.3f}/{row['phone']['arousal_uar']:.3f}"
                )
                return res

            if workers > 1:
                with get_context("fork").Pool(workers) as pool:
                    results = [done(r) for r in pool.imap(_run_fold, range(k))]
            else:
                results = [done(_run_fold(f)) for f in range(k)]
    finally:
        _FOLD_JOB.clear()
    folds = [r[0] for r in results]
    oof = {
        cond: {
            key: np.concatenate([r[1][cond][key] for r in results]) for key in results[0][1][cond]
        }
        for cond in EVAL_VARIANTS
    }
    return folds, oof


def summarise(folds, oof, cfg: Config, clips):
    ys = np.concatenate([oof[c]["y"] for c in oof])
    lp = np.concatenate([oof[c]["logp32"] for c in oof])
    m = ys >= 0
    T = fit_temperature(lp[m], ys[m])
    summary = {"temperature": T}
    ar_pooled, ar_folds, (ar_w, ar_t) = arousal_cv(oof, T, cfg)
    ar8_pooled, ar8_folds, _ = arousal_cv(oof, T, cfg, key="logp8")
    summary["arousal_method"] = cfg.arousal_method
    summary["arousal_head_weight"] = ar_w
    summary["arousal_threshold"] = ar_t
    for row in folds:
        for c in oof:
            row[c]["arousal_uar"] = ar_folds[c][row["fold"] - 1]
            row[c]["arousal_uar_int8"] = ar8_folds[c][row["fold"] - 1]
    for c, o in oof.items():
        y, a = o["y"], o["ar"]
        m, ma = y >= 0, a >= 0
        p_raw = apply_temperature(o["logp32"], 1.0)
        p_cal = apply_temperature(o["logp32"], T)
        p8 = apply_temperature(o["logp8"], T)
        first = o["pos"] == 0
        summary[c] = {
            "uar": uar(y[m], p_raw.argmax(1)[m], N_CLS),
            "uar_int8": uar(y[m], p8.argmax(1)[m], N_CLS),
            "accuracy": float(np.mean(p_raw.argmax(1)[m] == y[m])),
            "uar_fold_mean": float(np.mean([f[c]["uar"] for f in folds])),
            "uar_fold_std": float(np.std([f[c]["uar"] for f in folds])),
            "uar_first_utterance": uar(y[m & first], p_raw.argmax(1)[m & first], N_CLS),
            "uar_later_utterances": uar(y[m & ~first], p_raw.argmax(1)[m & ~first], N_CLS),
            "arousal_uar": ar_pooled[c],
            "arousal_uar_int8": ar8_pooled[c],
            "arousal_uar_at_0": uar(
                a[ma],
                (arousal_from_probs(p_cal, o["arh"], ar_w, cfg.arousal_method)[ma] > 0).astype(int),
                2,
            ),
            "arousal_uar_class_sum": uar(
                a[ma], (arousal_from_probs(p_cal, method="class_sum")[ma] > 0).astype(int), 2
            ),
            "arousal_uar_circumplex": uar(
                a[ma], (arousal_from_probs(p_cal)[ma] > 0).astype(int), 2
            ),
            "arousal_uar_head": uar(a[ma], (o["arh"][ma] > 0.5).astype(int), 2),
            "ece_before": ece(p_raw[m], y[m]),
            "ece_after": ece(p_cal[m], y[m]),
            "uncertain_fraction": float(np.mean(p_cal[m].max(1) < cfg.uncertain_threshold)),
            "accuracy_when_certain": float(
                np.mean((p_cal.argmax(1) == y)[m & (p_cal.max(1) >= cfg.uncertain_threshold)])
            ),
            "confusion": confusion(y[m], p_raw.argmax(1)[m]).tolist(),
            "per_class_recall": {
                LABELS[k]: float(np.mean(p_raw.argmax(1)[m][y[m] == k] == k))
                for k in range(N_CLS)
                if np.any(y[m] == k)
            },
        }
        tgt = np.where(o["anchor"], -1.0, [clips[i].intensity for i in o["ix"]])
        summary[c]["intensity_mean_by_target"] = {
            str(t): float(np.mean(o["int"][tgt == t])) for t in (0.0, 0.5, 1.0) if np.any(tgt == t)
        }
    summary["anchors"] = anchor_summary(oof, T, cfg)
    scores = np.concatenate([o["ood"] for o in oof.values()])
    summary["ood"] = {
        "q50": float(np.quantile(scores, 0.5)),
        "q99": float(np.quantile(scores, 0.99)),
    }
    return summary


def anchor_summary(oof: dict, T: float, cfg: Config) -> dict:
    """Held-out neutral anchors (calm non-acted speech): share labelled neutral and share with a
    confident (>= 0.7) non-neutral label, with the training prior and with the deployment prior."""
    from appliance.emotion.policy import adjust_prior

    out: dict = {}
    for c, o in oof.items():
        a = o["anchor"]
        if not a.any():
            continue
        p = apply_temperature(o["logp32"][a], T)
        q = adjust_prior(p, np.asarray(cfg.deploy_prior))
        nn = LABELS.index("neutral")
        out[c] = {
            "n": int(a.sum()),
            "neutral": float(np.mean(p.argmax(1) == nn)),
            "confident_non_neutral": float(np.mean((p.argmax(1) != nn) & (p.max(1) >= 0.7))),
            "neutral_deploy_prior": float(np.mean(q.argmax(1) == nn)),
            "confident_non_neutral_deploy_prior": float(
                np.mean((q.argmax(1) != nn) & (q.max(1) >= 0.7))
            ),
        }
    return out
