#!/usr/bin/env python3
"""Train, cross-validate, calibrate, quantise and package the appliance emotion model.

    python models/train_emotion.py --data ../shared/data/ravdess/manifest.csv --out models/emotion

Manifest CSV: `path` (relative to the manifest), `emotion` (RAVDESS/EmoDB names), optional
`speaker` (CV folds are grouped by it), `call` (rows of one call share a causal normalisation
state, in file order; without it pseudo-calls of ~12 shuffled clips per speaker are formed),
`intensity` (normal/strong). Features come from the runtime path (`appliance.emotion`, which uses
`appliance.features`), so training and serving cannot drift apart.

Training-only dependencies: torch (CPU), scipy, soundfile, tqdm, onnx, onnxruntime(.quantization),
matplotlib (optional: the report plot is skipped without it).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import appliance  # noqa: F401
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emotion_channel import EVAL_VARIANTS, VARIANTS, make_variant  # noqa: E402

from appliance.emotion import model as E  # noqa: E402
from appliance.emotion.embedding import embedding_names  # noqa: E402
from appliance.tools.emotion_eval import arousal_of, normalise_label, read_audio  # noqa: E402
from appliance.types import EMOTION_LABELS  # noqa: E402

LABELS = list(EMOTION_LABELS)
N_CLS = len(LABELS)
CALL_SIZE = 12
MODEL_VERSION = "1.2.0"
DATA_LICENCE_RAVDESS = "CC BY-NC-SA 4.0"


@dataclass
class Config:
    folds: int = 6
    variants: tuple[str, ...] = tuple(VARIANTS)
    orderings: int = 2  # pseudo-call shufflings of the training data
    members: int = 6  # ensemble size
    hidden: tuple[int, int] = (128, 64)
    epochs: int = 25
    batch: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-2
    dropout: float = 0.3
    input_dropout: float = 0.1
    input_noise: float = 0.15
    label_smoothing: float = 0.05
    w_intensity: float = 0.3
    w_arousal: float = 1.0
    seed: int = 7
    uncertain_threshold: float = 0.5
    workers: int = 2
    linear_weight: float = 0.5  # blend weight of the LDA member (probability space)
    linear_per_rate: bool = True  # one LDA for 8 kHz inputs, one for 16 kHz (picked by is_8k)
    # covariance shrinkage of the per-rate LDAs ("auto" = Ledoit-Wolf, about 0.001 here); the pooled LDA
    # (one rate only, or linear_per_rate off) uses "auto"
    linear_shrinkage_16k: float | str = 0.1
    linear_shrinkage_8k: float | str = "auto"
    # arousal = (1-w) score + w (2 P(high) - 1), score: "class_sum" = 2 P(high-arousal class) - 1 or
    # "circumplex"; decided at a threshold chosen on out-of-fold scores (cross-fitted in the CV)
    arousal_method: str = "class_sum"
    # candidate weights of the trained arousal head in the arousal score; the weight and the
    # threshold are chosen together on out-of-fold scores (cross-fitted in the CV)
    arousal_head_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    # the MLPs see only the causal per-call z-scores (+ is_8k), not the globally scaled branch
    # (which carries speaker identity); the LDA member never did
    global_inputs: bool = False
    # speech embedding (Whisper tiny.en encoder, `appliance.emotion.embedding`) appended to the
    # frontend's features; its encoder window in seconds at least this long; 0 = no embedding
    embedding_min_window_s: int = 10

    @classmethod
    def quick(cls, folds: int) -> Config:
        return cls(
            folds=folds,
            variants=("clean16", "phone8a", "head16a", "phone8b"),
            orderings=1,
            members=2,
            epochs=15,
        )


# ----------------------------------------------------------------------------- data


@dataclass
class Clip:
    path: str  # as in the manifest
    abspath: Path
    label: int  # -1: outside the model's label set
    arousal: int  # -1 unknown
    intensity: float  # target in 0..1, -1 unknown
    group: str  # speaker (CV grouping)
    call: str  # "" = form pseudo-calls


def load_manifest(manifest: Path) -> list[Clip]:
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    clips = []
    for i, r in enumerate(rows):
        emo = r.get("emotion") or ""
        lab = normalise_label(emo)
        ar = arousal_of(emo, r.get("arousal"))
        inten = (r.get("intensity") or "").strip().lower()
        if lab == "neutral":
            t = 0.0  # neutral and calm: no emotion expressed
        elif inten == "strong":
            t = 1.0
        elif inten == "normal":
            t = 0.5
        else:
            t = -1.0
        spk = (r.get("speaker") or "").strip() or (r.get("call") or "").strip() or f"row{i}"
        clips.append(
            Clip(
                r["path"],
                manifest.parent / r["path"],
                LABELS.index(lab) if lab else -1,
                -1 if ar is None else ar,
                t,
                spk,
                (r.get("call") or "").strip(),
            )
        )
    return clips


def _frontend_signature() -> str:
    """Digest of the frontend's output on fixed probe signals at 8 and 16 kHz (plus feature names):
    cached features stay valid across frontend edits that do not change its output."""
    h = hashlib.sha256((E.FEATURE_VERSION + repr(E.feature_names())).encode())
    rng = np.random.default_rng(1234)
    for sr in (8000, 16000):
        t = np.arange(int(1.5 * sr)) / sr
        probe = (
            0.3 * np.sin(2 * np.pi * (120 + 60 * t) * t) * (1 + np.sin(2 * np.pi * 3 * t))
            + 0.01 * rng.standard_normal(len(t))
        ).astype(np.float32)
        h.update(np.round(E.utterance_features(probe, sr), 4).tobytes())
    return h.hexdigest()[:16]


def variant_job(c: Clip, variant: str) -> tuple[str, str, int, int]:
    """(path, variant, seed, speaker seed): one clip-variant, with seeds fixed by the clip's manifest
    path and speaker so every run simulates the same channel."""
    return (str(c.abspath), variant, zlib.crc32(c.path.encode()), zlib.crc32(c.group.encode()))


def variant_audio(path: str, variant: str, seed: int, speaker_seed: int) -> tuple[np.ndarray, int]:
    """Audio of `variant_job`'s clip-variant, as training extracts it."""
    x, sr = read_audio(Path(path))
    return make_variant(x, sr, variant, seed, speaker_seed)


def _extract_one(args: tuple[str, str, int, int]) -> np.ndarray:
    y, sr2 = variant_audio(*args)
    return np.concatenate([E.utterance_features(y, sr2), [sr2]])


_EMBEDDER = None  # one per worker process, loaded after the fork (CTranslate2 threads do not fork)
_EMBEDDER_WINDOW = 0


def _embedder(min_window_s: int):
    global _EMBEDDER
    if _EMBEDDER is None or _EMBEDDER.min_window_s != min_window_s:
        from appliance.emotion.embedding import SpeechEmbedder

        _EMBEDDER = SpeechEmbedder(min_window_s=min_window_s, threads=1)
    return _EMBEDDER


def _embed_one(args: tuple[str, str, int, int]) -> np.ndarray:
    y, sr2 = variant_audio(*args)
    return _embedder(_EMBEDDER_WINDOW).embed(y, sr2)


def _clip_key(c: Clip) -> str:
    st = c.abspath.stat()
    return hashlib.sha1(
        f"{c.abspath.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()
    ).hexdigest()


def _cached_per_clip(
    clips: list[Clip], variants, cache_dir: Path, tag: str, fn, workers: int, desc: str
) -> dict[str, np.ndarray]:
    """{variant: float64[n_clips, ...]} of `fn((path, variant, seed, speaker_seed))`, cached per clip
    in `cache_dir/{variant}-{tag}.npz` (a new `tag` when what `fn` computes changes)."""
    from tqdm import tqdm

    cache_dir.mkdir(parents=True, exist_ok=True)
    cached: dict[str, dict[str, np.ndarray]] = {}
    todo = []
    keys = [_clip_key(c) for c in clips]
    for v in variants:
        cf = cache_dir / f"{v}-{tag}.npz"
        d = dict(np.load(cf, allow_pickle=False)) if cf.exists() else {}
        cached[v] = d
        for c, key in zip(clips, keys, strict=True):
            if key not in d:
                todo.append((v, key, variant_job(c, v)))
    if todo:
        from multiprocessing import get_context

        jobs = [t[2] for t in todo]
        if workers > 1:
            with get_context("fork").Pool(workers) as pool:
                it = pool.imap(fn, jobs, chunksize=8)
                res = list(tqdm(it, total=len(jobs), desc=desc, unit="clip"))
        else:
            res = [fn(j) for j in tqdm(jobs, desc=desc, unit="clip")]
        for (v, key, _), f in zip(todo, res, strict=True):
            cached[v][key] = f
        for v in {t[0] for t in todo}:
            np.savez(cache_dir / f"{v}-{tag}.npz", **cached[v])
    return {v: np.stack([cached[v][k] for k in keys]) for v in variants}


def embedding_spec(min_window_s: int) -> dict:
    """The card's `embedding` section for a window policy (loads the encoder)."""
    from appliance.emotion.embedding import SpeechEmbedder

    return SpeechEmbedder(min_window_s=min_window_s, threads=1).spec


def extract(
    clips: list[Clip], variants, cache_dir: Path, workers: int, embedding: dict | None = None
) -> dict[str, np.ndarray]:
    """Raw model inputs per variant: {variant: float64[n_clips, n_feat + 1]} (last column = sample
    rate): the frontend's features, then the speech embedding when `embedding` (a card's embedding
    spec) is given."""
    global _EMBEDDER_WINDOW
    from appliance import features

    if hasattr(features, "warm_up"):
        features.warm_up()
    out = _cached_per_clip(
        clips, variants, cache_dir, _frontend_signature(), _extract_one, workers, "features"
    )
    if embedding:
        _EMBEDDER_WINDOW = int(embedding["min_window_s"])
        tag = hashlib.sha256(json.dumps(embedding, sort_keys=True).encode()).hexdigest()[:16]
        emb = _cached_per_clip(
            clips, variants, cache_dir, f"emb-{tag}", _embed_one, workers, "embedding"
        )
        out = {v: np.hstack([out[v][:, :-1], emb[v], out[v][:, -1:]]) for v in variants}
    return out


# ----------------------------------------------------------------------------- normalisation


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


# ----------------------------------------------------------------------------- network


def train_members(
    Z: np.ndarray,
    ix: np.ndarray,
    clips: list[Clip],
    cfg: Config,
    desc: str = "train",
    progress: bool = True,
):
    """Train `cfg.members` MLPs with different seeds; returns a list of numpy weight dicts."""
    import torch
    from torch import nn
    from tqdm import tqdm

    torch.set_num_threads(1)
    y = np.array([clips[i].label for i in ix])
    ar = np.array([clips[i].arousal for i in ix], dtype=np.float32)
    it = np.array([clips[i].intensity for i in ix], dtype=np.float32)
    counts = np.bincount(y[y >= 0], minlength=N_CLS).astype(np.float64)
    cw = np.where(counts > 0, counts.sum() / (N_CLS * np.maximum(counts, 1)), 0.0)
    nf = (Z.shape[1] - 1) // 2
    keep = torch.ones(Z.shape[1])
    if not cfg.global_inputs:
        keep[nf : 2 * nf] = 0.0  # the globally scaled branch (speaker identity) is not an MLP input
    Xt = torch.from_numpy(Z.astype(np.float32)) * keep
    yt, at, itt = torch.from_numpy(y), torch.from_numpy(ar), torch.from_numpy(it)
    ce = nn.CrossEntropyLoss(
        weight=torch.tensor(cw, dtype=torch.float32),
        ignore_index=-1,
        label_smoothing=cfg.label_smoothing,
    )
    bce = nn.BCEWithLogitsLoss(reduction="none")
    D = Z.shape[1]
    h1, h2 = cfg.hidden
    members = []
    steps_per_epoch = int(np.ceil(len(Z) / cfg.batch))
    bar = tqdm(
        total=cfg.members * cfg.epochs, desc=desc, unit="ep", leave=False, disable=not progress
    )
    for m in range(cfg.members):
        torch.manual_seed(cfg.seed * 100 + m)
        net = nn.Sequential(
            nn.Dropout(cfg.input_dropout),
            nn.Linear(D, h1),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(h1, h2),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(h2, N_CLS + 2),
        )
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch
        )
        g = torch.Generator().manual_seed(cfg.seed * 1000 + m)
        for _ep in range(cfg.epochs):
            net.train()
            perm = torch.randperm(len(Xt), generator=g)
            for s in range(steps_per_epoch):
                b = perm[s * cfg.batch : (s + 1) * cfg.batch]
                xb = Xt[b]
                xb = (xb + cfg.input_noise * torch.randn(xb.shape, generator=g)) * keep
                out = net(xb)
                loss = ce(out[:, :N_CLS], yt[b]) if (yt[b] >= 0).any() else out.sum() * 0
                ma = at[b] >= 0
                if ma.any():
                    loss = loss + cfg.w_arousal * bce(out[:, N_CLS + 1][ma], at[b][ma]).mean()
                mi = itt[b] >= 0
                if mi.any():
                    loss = loss + cfg.w_intensity * bce(out[:, N_CLS][mi], itt[b][mi]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            bar.update(1)
        net.eval()
        lin = [mod for mod in net if isinstance(mod, nn.Linear)]
        w = {f"W{k}": lin[k].weight.detach().numpy().T.copy() for k in range(3)} | {
            f"b{k}": lin[k].bias.detach().numpy().copy() for k in range(3)
        }
        w["W0"] *= keep.numpy()[:, None]  # exactly zero weight on inputs the MLP never saw
        members.append(w)
    bar.close()
    return members


def _fit_lda(
    Zz: np.ndarray, y: np.ndarray, dim: int, shrinkage: float | str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    present = np.unique(y)
    lda = LinearDiscriminantAnalysis(
        solver="lsqr", shrinkage=shrinkage, priors=np.full(len(present), 1.0 / len(present))
    )
    lda.fit(Zz, y)
    W = np.zeros((dim, N_CLS), dtype=np.float32)
    b = np.full(N_CLS, -30.0, dtype=np.float32)  # classes absent from the training data
    W[: Zz.shape[1], lda.classes_] = lda.coef_.T
    b[lda.classes_] = lda.intercept_
    return W, b


def train_linear(Z: np.ndarray, ix: np.ndarray, clips: list[Clip], cfg: Config) -> dict:
    """Shrinkage LDA (Ledoit-Wolf, uniform class priors) on the causal z-scores only; exported as a linear
    layer + softmax (the other inputs get zero weight). With `cfg.linear_per_rate` (and both rates in the
    training data) one LDA is fitted on the 16 kHz rows (`W`, `b`) and one on the 8 kHz rows (`W8`, `b8`);
    the is_8k input picks one: the telephone channel's class-conditional statistics differ."""
    y = np.array([clips[i].label for i in ix])
    m = y >= 0
    nf = (Z.shape[1] - 1) // 2
    is8 = Z[:, -1] > 0.5
    out = {"weight": cfg.linear_weight}
    if cfg.linear_per_rate and len(np.unique(y[m & is8])) > 1 and len(np.unique(y[m & ~is8])) > 1:
        out["W"], out["b"] = _fit_lda(
            Z[m & ~is8, :nf], y[m & ~is8], Z.shape[1], cfg.linear_shrinkage_16k
        )
        out["W8"], out["b8"] = _fit_lda(
            Z[m & is8, :nf], y[m & is8], Z.shape[1], cfg.linear_shrinkage_8k
        )
    else:
        out["W"], out["b"] = _fit_lda(Z[m, :nf], y[m], Z.shape[1])
    return out


def forward_numpy(members, Z: np.ndarray) -> np.ndarray:
    """Mean head outputs over the ensemble (pre-activation): float[n, N_CLS + 2]."""
    acc = 0.0
    for w in members:
        h = np.maximum(Z @ w["W0"] + w["b0"], 0)
        h = np.maximum(h @ w["W1"] + w["b1"], 0)
        acc = acc + h @ w["W2"] + w["b2"]
    return acc / len(members)


# ----------------------------------------------------------------------------- ONNX


def build_onnx(
    members, linear: dict | None, dim: int, temperature: float, spec_sha: str, path: Path
) -> None:
    """Ensemble as 3 MatMul layers: concatenated first layers, per-member second layers, stacked heads,
    plus an optional linear (LDA) member.

    Outputs: `probs` = softmax(log(blend) / T) with blend = (1-w) softmax(mean MLP logits) + w softmax(LDA
    logits), `intensity` = sigmoid(mean intensity logit), `arousal_high` = sigmoid(mean arousal logit)
    (auxiliary head, exported for diagnostics). Input columns that every member gives zero weight
    (the globally scaled branch when `Config.global_inputs` is off) are dropped by a Gather first.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    M = len(members)
    h1 = members[0]["W0"].shape[1]
    W0 = np.concatenate([w["W0"] for w in members], axis=1).astype(np.float32)
    used = np.any(W0 != 0, axis=1)
    if linear is not None and linear["weight"] > 0:
        used |= np.any(linear["W"] != 0, axis=1)
        if "W8" in linear:
            used |= np.any(linear["W8"] != 0, axis=1)
    used_idx = np.flatnonzero(used).astype(np.int64)
    gather = len(used_idx) < dim
    inp = "x_used" if gather else "features"
    if gather:
        W0 = W0[used_idx]
    b0 = np.concatenate([w["b0"] for w in members]).astype(np.float32)
    W2 = (np.concatenate([w["W2"] for w in members], axis=0) / M).astype(np.float32)
    b2 = (np.mean([w["b2"] for w in members], axis=0)).astype(np.float32)
    inits = [
        numpy_helper.from_array(W0, "W0"),
        numpy_helper.from_array(b0, "b0"),
        numpy_helper.from_array(W2, "W2"),
        numpy_helper.from_array(b2, "b2"),
        numpy_helper.from_array(np.array([1.0 / temperature], np.float32), "invT"),
        numpy_helper.from_array(np.array([0, N_CLS, N_CLS + 1], np.int64), "starts"),
        numpy_helper.from_array(np.array([N_CLS, N_CLS + 1, N_CLS + 2], np.int64), "ends"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([h1] * M, np.int64), "split"),
    ]
    nodes = [
        helper.make_node("MatMul", [inp, "W0"], ["l0m"]),
        helper.make_node("Add", ["l0m", "b0"], ["l0a"]),
        helper.make_node("Relu", ["l0a"], ["l0"]),
        helper.make_node("Split", ["l0", "split"], [f"s{m}" for m in range(M)], axis=1),
    ]
    for m, w in enumerate(members):
        inits += [
            numpy_helper.from_array(w["W1"].astype(np.float32), f"W1_{m}"),
            numpy_helper.from_array(w["b1"].astype(np.float32), f"b1_{m}"),
        ]
        nodes += [
            helper.make_node("MatMul", [f"s{m}", f"W1_{m}"], [f"l1m_{m}"]),
            helper.make_node("Add", [f"l1m_{m}", f"b1_{m}"], [f"l1a_{m}"]),
            helper.make_node("Relu", [f"l1a_{m}"], [f"l1_{m}"]),
        ]
    nodes += [
        helper.make_node("Concat", [f"l1_{m}" for m in range(M)], ["l1"], axis=1),
        helper.make_node("MatMul", ["l1", "W2"], ["l2m"]),
        helper.make_node("Add", ["l2m", "b2"], ["heads"]),
    ]
    for name, k in (("logits", 0), ("int_logit", 1), ("ar_logit", 2)):
        inits += [
            numpy_helper.from_array(np.array([[0, N_CLS, N_CLS + 1][k]], np.int64), f"st_{name}"),
            numpy_helper.from_array(
                np.array([[N_CLS, N_CLS + 1, N_CLS + 2][k]], np.int64), f"en_{name}"
            ),
        ]
        nodes.append(
            helper.make_node("Slice", ["heads", f"st_{name}", f"en_{name}", "axis1"], [name])
        )
    if linear is not None and linear["weight"] > 0:
        w = float(linear["weight"])
        inits += [
            numpy_helper.from_array(
                (linear["W"][used_idx] if gather else linear["W"]).astype(np.float32), "Wlin"
            ),
            numpy_helper.from_array(linear["b"].astype(np.float32), "blin"),
            numpy_helper.from_array(np.array([1.0 - w], np.float32), "w_mlp"),
            numpy_helper.from_array(np.array([w], np.float32), "w_lin"),
            numpy_helper.from_array(np.array([1e-7], np.float32), "eps"),
        ]
        nodes += [
            helper.make_node("Softmax", ["logits"], ["p_mlp"], axis=1),
            helper.make_node("MatMul", [inp, "Wlin"], ["lin_m"]),
            helper.make_node("Add", ["lin_m", "blin"], ["lin_logits"]),
            helper.make_node(
                "Softmax", ["lin_logits"], ["p_lin16" if "W8" in linear else "p_lin"], axis=1
            ),
            helper.make_node("Mul", ["p_mlp", "w_mlp"], ["p_mlp_w"]),
            helper.make_node("Mul", ["p_lin", "w_lin"], ["p_lin_w"]),
            helper.make_node("Add", ["p_mlp_w", "p_lin_w"], ["p_blend"]),
            helper.make_node("Add", ["p_blend", "eps"], ["p_blend_eps"]),
            helper.make_node("Log", ["p_blend_eps"], ["blend_logits"]),
        ]
        logits_name = "blend_logits"
        if "W8" in linear:  # p_lin = p_lin16 + is_8k * (p_lin8 - p_lin16)
            inits += [
                numpy_helper.from_array(
                    (linear["W8"][used_idx] if gather else linear["W8"]).astype(np.float32), "Wlin8"
                ),
                numpy_helper.from_array(linear["b8"].astype(np.float32), "blin8"),
                numpy_helper.from_array(np.array([dim - 1], np.int64), "flag_idx"),
            ]
            at = next(i for i, n in enumerate(nodes) if "p_lin16" in n.output) + 1
            nodes[at:at] = [
                helper.make_node("Gather", ["features", "flag_idx"], ["is8k"], axis=1),
                helper.make_node("MatMul", [inp, "Wlin8"], ["lin8_m"]),
                helper.make_node("Add", ["lin8_m", "blin8"], ["lin8_logits"]),
                helper.make_node("Softmax", ["lin8_logits"], ["p_lin8"], axis=1),
                helper.make_node("Sub", ["p_lin8", "p_lin16"], ["p_lin_d"]),
                helper.make_node("Mul", ["p_lin_d", "is8k"], ["p_lin_dm"]),
                helper.make_node("Add", ["p_lin16", "p_lin_dm"], ["p_lin"]),
            ]
    else:
        logits_name = "logits"
    nodes += [
        helper.make_node("Mul", [logits_name, "invT"], ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["probs"], axis=1),
        helper.make_node("Sigmoid", ["int_logit"], ["intensity"]),
        helper.make_node("Sigmoid", ["ar_logit"], ["arousal_high"]),
    ]
    inits = [t for t in inits if t.name not in ("starts", "ends")]
    if gather:
        inits.append(numpy_helper.from_array(used_idx, "used_idx"))
        nodes.insert(0, helper.make_node("Gather", ["features", "used_idx"], [inp], axis=1))
    graph = helper.make_graph(
        nodes,
        "emotion_mlp_ensemble",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", dim])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", N_CLS]),
            helper.make_tensor_value_info("intensity", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("arousal_high", TensorProto.FLOAT, ["N", 1]),
        ],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="appliance-train-emotion"
    )
    model.ir_version = 8
    helper.set_model_props(model, {"spec_sha256": spec_sha, "labels": ",".join(LABELS)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def quantise(fp32: Path, int8: Path, calib: np.ndarray) -> None:
    """Static QDQ int8 quantisation (per-channel weights) calibrated on training inputs."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self, X):
            self.it = iter([{"features": X[i : i + 64]} for i in range(0, len(X), 64)])

        def get_next(self):
            return next(self.it, None)

    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(
        logging.ERROR
    )  # quantize_static logs a "consider pre-processing" hint on every call
    try:
        quantize_static(
            str(fp32),
            str(int8),
            Reader(calib.astype(np.float32)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            op_types_to_quantize=["MatMul"],
        )
    finally:
        root.setLevel(level)
    # keep the spec digest in the quantised file's metadata
    src = onnx.load(str(fp32))
    m = onnx.load(str(int8))
    del m.metadata_props[:]
    for p in src.metadata_props:
        m.metadata_props.add(key=p.key, value=p.value)
    onnx.save(m, str(int8))


def onnx_run(path: Path, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    p, i, a = s.run(None, {"features": Z.astype(np.float32)})
    return p, i[:, 0], a[:, 0]


# ----------------------------------------------------------------------------- metrics


def uar(y, p, n) -> float:
    r = [np.mean(p[y == c] == c) for c in range(n) if np.any(y == c)]
    return float(np.mean(r)) if r else float("nan")


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    e = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            e += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(e)


def fit_temperature(logp: np.ndarray, y: np.ndarray) -> float:
    def nll(T):
        z = logp / T
        z = z - z.max(1, keepdims=True)
        lse = np.log(np.exp(z).sum(1))
        return float(np.mean(lse - z[np.arange(len(y)), y]))

    grid = np.exp(np.linspace(np.log(0.25), np.log(6), 200))
    return float(grid[int(np.argmin([nll(t) for t in grid]))])


def apply_temperature(logp, T):
    z = logp / T
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def arousal_from_probs(
    probs: np.ndarray,
    arousal_high: np.ndarray | None = None,
    w: float = 0.0,
    method: str = "circumplex",
    threshold: float = 0.0,
) -> np.ndarray:
    """Arousal exactly as the runtime computes it (`appliance.emotion.model.arousal_value`); > 0 = high."""
    return E.arousal_value(probs, arousal_high, w, method, threshold)


def choose_arousal_threshold(score: np.ndarray, a: np.ndarray) -> float:
    """Decision threshold on an arousal score maximising binary UAR (balanced accuracy); ties go to
    the threshold nearest 0."""
    grid = np.round(np.linspace(-0.9, 0.9, 181), 4)
    u = np.array([uar(a, (score > t).astype(int), 2) for t in grid])
    best = np.flatnonzero(u >= u.max() - 1e-12)
    return float(grid[best[np.argmin(np.abs(grid[best]))]])


def choose_arousal_rule(
    scores: dict[float, np.ndarray], a: np.ndarray
) -> tuple[float, float, float]:
    """(head weight, threshold, UAR): the arousal head weight (keys of `scores`, each the arousal
    score at that weight) and decision threshold with the best balanced accuracy on `a`; ties go to
    the smaller weight."""
    best = (0.0, 0.0, -1.0)
    for w in sorted(scores):
        t = choose_arousal_threshold(scores[w], a)
        u = uar(a, (scores[w] > t).astype(int), 2)
        if u > best[2] + 1e-9:
            best = (w, t, u)
    return best


def arousal_cv(
    oof, T: float, cfg: Config, key: str = "logp32"
) -> tuple[dict, dict, tuple[float, float]]:
    """Cross-fitted arousal decisions: held-out fold f is decided with the head weight and threshold
    chosen on the other folds' out-of-fold scores (16k and phone pooled), so no fold's rule saw its
    own clips. Returns ({cond: pooled UAR}, {cond: {fold: UAR}}, (head weight, threshold) chosen on
    all folds for the shipped model)."""
    sc, ar, fo = {}, {}, {}
    for c, o in oof.items():
        ma = o["ar"] >= 0
        p = apply_temperature(o[key], T)
        sc[c] = {
            w: arousal_from_probs(p, o["arh"], w, cfg.arousal_method)[ma]
            for w in cfg.arousal_head_weights
        }
        ar[c], fo[c] = o["ar"][ma], o["fold"][ma]
    all_a, all_f = (np.concatenate([d[c] for c in oof]) for d in (ar, fo))
    all_s = {w: np.concatenate([sc[c][w] for c in oof]) for w in cfg.arousal_head_weights}
    pred = {c: np.zeros(len(ar[c]), dtype=int) for c in oof}
    for f in np.unique(all_f):
        rest = all_f != f
        w, t, _ = choose_arousal_rule({k: v[rest] for k, v in all_s.items()}, all_a[rest])
        for c in oof:
            pred[c][fo[c] == f] = (sc[c][w][fo[c] == f] > t).astype(int)
    pooled = {c: uar(ar[c], pred[c], 2) for c in oof}
    per_fold = {
        c: {int(f): uar(ar[c][fo[c] == f], pred[c][fo[c] == f], 2) for f in np.unique(fo[c])}
        for c in oof
    }
    w, t, _ = choose_arousal_rule(all_s, all_a)
    return pooled, per_fold, (w, t)


# ----------------------------------------------------------------------------- latency


def latency(
    paths: dict[str, Path],
    clips: list[Clip],
    priors,
    embedding: dict | None = None,
    rounds: int = 5,
    reps: int = 100,
) -> dict:
    """Median ms per 1 s window (features + speech embedding + normalisation + ONNX, and ONNX
    alone), 1 thread, at 16 kHz and 8 kHz phone. The models are timed in interleaved rounds so
    machine load hits them alike."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = {
        k: ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        for k, p in paths.items()
    }
    embedder = None
    if embedding:
        from appliance.emotion.embedding import SpeechEmbedder

        embedder = SpeechEmbedder.from_spec(embedding, threads=1)
        reps = max(10, reps // 5)  # the encoder pass dominates: fewer repetitions suffice
    x, sr = read_audio(clips[0].abspath)
    res: dict = {k: {} for k in paths}
    for name, variant in (("16k", "clean16"), ("phone", "phone8a")):
        y, sr2 = make_variant(x, sr, variant, 0)
        mid = len(y) // 2
        w = y[max(0, mid - sr2 // 2) : mid + sr2 // 2]
        st = E.ChannelState(priors)
        z = st.normalise(E.raw_features(w, sr2, embedder), sr2)[None]
        for s in sess.values():
            for _ in range(20):
                s.run(None, {"features": z})
        t_all: dict = {k: [] for k in sess}
        t_inf: dict = {k: [] for k in sess}
        for _ in range(rounds):
            for k, s in sess.items():
                for _ in range(reps):
                    t0 = time.perf_counter()
                    z = st.normalise(E.raw_features(w, sr2, embedder), sr2)[None]
                    t1 = time.perf_counter()
                    s.run(None, {"features": z})
                    t2 = time.perf_counter()
                    t_all[k].append(t2 - t0)
                    t_inf[k].append(t2 - t1)
        for k in sess:
            res[k][name] = {
                "total_ms": round(1000 * float(np.median(t_all[k])), 3),
                "onnx_ms": round(1000 * float(np.median(t_inf[k])), 4),
            }
    return res


# ----------------------------------------------------------------------------- main pipeline


_FOLD_JOB: dict = {}  # what the fold workers share (inherited through fork, not pickled)


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
    row = {"fold": f + 1, "speakers": sorted(set(groups[te])), "n": int(len(te))}
    out = {}
    for cond, variant in EVAL_VARIANTS.items():
        calls = make_calls(clips, te, np.random.default_rng(1000 + f))
        Zt, ixt = normalise_calls(feats[variant], calls, priors)
        pos = np.concatenate([np.arange(len(c)) for c in calls])
        pa, inten, arh = onnx_run(p32, Zt)
        pb, _, _ = onnx_run(p8, Zt)
        y = np.array([clips[i].label for i in ixt])
        a = np.array([clips[i].arousal for i in ixt])
        out[cond] = {
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
    uniq = sorted(set(groups))
    k = min(cfg.folds, len(uniq))
    fold_of_group = {g: i % k for i, g in enumerate(uniq)}
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
        tgt = np.array([clips[i].intensity for i in o["ix"]])
        summary[c]["intensity_mean_by_target"] = {
            str(t): float(np.mean(o["int"][tgt == t])) for t in (0.0, 0.5, 1.0) if np.any(tgt == t)
        }
    return summary


def confusion(y, p):
    cm = np.zeros((N_CLS, N_CLS), dtype=int)
    for t, q in zip(y, p, strict=True):
        cm[t, q] += 1
    return cm


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


def train(
    manifest: str | Path,
    out_dir: str | Path,
    folds: int = 6,
    quick: bool = False,
    cache_dir: str | Path | None = None,
    skip_cv: bool = False,
    log=print,
) -> dict:
    """Full pipeline: features -> speaker-grouped CV -> calibration -> final model -> ONNX fp32/int8
    -> latency -> model card. Returns the card dict."""
    import tempfile

    t_start = time.time()
    manifest, out_dir = Path(manifest).resolve(), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = Config.quick(folds) if quick else Config(folds=folds)
    cache = Path(cache_dir) if cache_dir else Path(__file__).resolve().parent / ".cache" / "emotion"
    clips = load_manifest(manifest)
    log(
        f"{len(clips)} clips, {len({c.group for c in clips})} speakers/groups; variants {cfg.variants}"
    )
    with manifest.open(newline="") as fh:
        header = next(csv.reader(fh))
    if "speaker" not in header:
        log(
            "note: no 'speaker' column - CV folds are grouped by 'call' (or by file), so one speaker can appear "
            "on both sides of a fold and the CV numbers are optimistic; add a speaker column for honest CV"
        )
    emb_spec = embedding_spec(cfg.embedding_min_window_s) if cfg.embedding_min_window_s else None
    feats = extract(clips, cfg.variants, cache, cfg.workers, emb_spec)
    work = Path(tempfile.mkdtemp(prefix="emotion-train-"))
    folds_res, summary = [], {}
    if not skip_cv:
        folds_res, oof = cross_validate(feats, clips, cfg, work)
        summary = summarise(folds_res, oof, cfg, clips)
        T = summary["temperature"]
    else:
        T = 1.0
    # ---- final model on everything
    all_idx = np.arange(len(clips))
    priors = fit_priors({v: feats[v] for v in cfg.variants}, clips, all_idx)
    Z, ix = training_set(feats, clips, all_idx, priors, cfg, np.random.default_rng(cfg.seed))
    members = train_members(Z, ix, clips, cfg, desc="final model")
    linear = train_linear(Z, ix, clips, cfg)
    names = E.feature_names() + (embedding_names(emb_spec["dim"]) if emb_spec else [])
    spec = {
        "version": MODEL_VERSION,
        "feature_version": E.FEATURE_VERSION,
        "labels": LABELS,
        "feature_names": names,
        "sample_rates": [8000, 16000],
        "onnx_input": {
            "name": "features",
            "dim": int(Z.shape[1]),
            "layout": "[z-scored (causal per call) features, globally scaled features, is_8k]",
        },
        "onnx_outputs": ["probs", "intensity", "arousal_high"],
        "normalisation": {str(sr): p.to_json() for sr, p in sorted(priors.items())},
        "temperature": T,
        "uncertain_threshold": cfg.uncertain_threshold,
        "circumplex": {k: list(v) for k, v in E.CIRCUMPLEX.items()},
        "arousal_head_weight": summary.get("arousal_head_weight", 0.0),
        "arousal_method": cfg.arousal_method,
        "arousal_high_labels": list(E.HIGH_AROUSAL_LABELS),
        "arousal_threshold": summary.get("arousal_threshold", 0.0),
    }
    if emb_spec:
        spec["embedding"] = emb_spec
    sha = E.spec_digest(spec)
    f32, i8 = out_dir / "emotion-fp32.onnx", out_dir / "emotion-int8.onnx"
    build_onnx(members, linear, int(Z.shape[1]), T, sha, f32)
    sub = np.random.default_rng(0).choice(len(Z), size=min(2000, len(Z)), replace=False)
    quantise(f32, i8, Z[sub])
    lat = latency({"fp32": f32, "int8": i8}, clips, priors, emb_spec)
    lat32, lat8 = lat["fp32"], lat["int8"]
    # ---- choose the shipped variant: int8 only if faster and within 1 UAR point
    choice, why = "fp32", "no CV run"
    if summary:
        d16 = summary["16k"]["uar"] - summary["16k"]["uar_int8"]
        dph = summary["phone"]["uar"] - summary["phone"]["uar_int8"]
        faster = (
            lat8["16k"]["onnx_ms"] < lat32["16k"]["onnx_ms"]
            and lat8["phone"]["onnx_ms"] < lat32["phone"]["onnx_ms"]
        )
        if faster and max(d16, dph) <= 0.01:
            choice, why = "int8", "int8 measured faster than fp32 and within 1 UAR point"
        else:
            choice = "fp32"
            why = (
                "int8 not faster than fp32 on this CPU"
                if not faster
                else f"int8 loses {100 * max(d16, dph):.1f} UAR points"
            )
    size32, size8 = f32.stat().st_size, i8.stat().st_size
    files = {f32.name: E.sha256_file(f32), i8.name: E.sha256_file(i8)}
    n_params = sum(int(np.count_nonzero(w[k])) for w in members for k in w) + sum(
        int(np.count_nonzero(linear[k])) + N_CLS for k in ("W", "W8") if k in linear
    )
    plot_note = None
    card = {
        "name": "appliance-emotion",
        "model_file": f32.name if choice == "fp32" else i8.name,
        "variants": {"fp32": f32.name, "int8": i8.name},
        "files": files,
        "sizes_bytes": {f32.name: size32, i8.name: size8},
        "shipped_variant": choice,
        "shipped_reason": why,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "spec": spec,
        "architecture": {
            "type": "MLP ensemble + shrinkage LDA on utterance statistics"
            + (" and a Whisper tiny.en encoder embedding" if emb_spec else ""),
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
            "inputs": f"{len(names)} raw features -> {Z.shape[1]} model inputs"
            + (
                ""
                if cfg.global_inputs
                else f" (the MLPs and the LDA use the {len(names)} causal z-scores + is_8k; the globally "
                "scaled branch has zero weight)"
            ),
            "heads": "7 emotion logits (temperature-scaled softmax), intensity (sigmoid), arousal high/low (sigmoid, auxiliary)",
        },
        "training": {
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
                if "ravdess" in str(manifest).lower()
                else str(manifest.name)
            ),
            "data_licence": DATA_LICENCE_RAVDESS
            if "ravdess" in str(manifest).lower()
            else "as licensed by the site",
        },
        "licence_note": (
            "Trained on RAVDESS (CC BY-NC-SA 4.0): the model inherits non-commercial, share-alike, "
            "attribution terms. A commercial deployment must retrain on data it is licensed for: "
            "`appliance train-emotion --data MANIFEST --out DIR`."
            if "ravdess" in str(manifest).lower()
            else "Trained on the site's own data."
        ),
        "cv": {
            "folds": folds_res,
            "summary": summary,
            "protocol": (
                f"{cfg.folds}-fold CV grouped by speaker; held-out clips scored in pseudo-calls of ~{CALL_SIZE} "
                "shuffled clips of one speaker with the causal running normalisation, through the exported ONNX "
                "(fp32 and static-QDQ int8 per fold); 16k = clip as recorded; phone = 300-3400 Hz, 8 kHz, "
                "line noise, gain, G.711 mu-law (fixed seed)"
            ),
        },
        "calibration": (
            {
                "method": "temperature scaling on out-of-fold logits",
                "temperature": T,
                "ece_before": {c: summary[c]["ece_before"] for c in EVAL_VARIANTS},
                "ece_after": {c: summary[c]["ece_after"] for c in EVAL_VARIANTS},
            }
            if summary
            else None
        ),
        "quantisation": {
            "method": "onnxruntime quantize_static, QDQ, per-channel int8 weights, uint8 activations, MatMul only",
            "fp32": {
                "uar": {c: summary[c]["uar"] for c in EVAL_VARIANTS} if summary else None,
                "latency_1s_window": lat32,
                "bytes": size32,
            },
            "int8": {
                "uar": {c: summary[c]["uar_int8"] for c in EVAL_VARIANTS} if summary else None,
                "latency_1s_window": lat8,
                "bytes": size8,
            },
            "latency_note": "median over 5 interleaved rounds, 1 thread, 2-core x86 build box shared with other work; total = features + speech embedding + normalisation + ONNX",
        },
        "outputs": {
            "confidence": "calibrated probability of the label (temperature scaling)",
            "uncertain": f"confidence < {cfg.uncertain_threshold} (the label is more likely wrong than right)",
            "intensity": "sigmoid head trained on RAVDESS intensity: neutral/calm 0, normal 0.5, strong 1",
            "valence": "expectation of circumplex valence over the calibrated class probabilities",
            "arousal": arousal_text(
                cfg, summary.get("arousal_head_weight", 0.0), summary.get("arousal_threshold", 0.0)
            ),
        },
    }
    plot_note = (
        plot_report(out_dir / "training_report.png", folds_res, summary) if summary else "no CV"
    )
    card["report_plot"] = "training_report.png" if plot_note is None else plot_note
    card["training"]["duration_s"] = round(time.time() - t_start, 1)
    (out_dir / "model_card.json").write_text(json.dumps(card, indent=1) + "\n")
    (out_dir / "MODEL_CARD.md").write_text(render_card_md(card))
    log(f"done in {card['training']['duration_s']} s; shipped {card['model_file']} ({why})")
    return card


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


def render_card_md(card: dict) -> str:
    s = card["cv"]["summary"]
    L = [
        f"# Model card: {card['name']} {card['spec']['version']}",
        "",
        f"Shipped file: `{card['model_file']}` ({card['shipped_variant']}; {card['shipped_reason']}).",
        "",
        "| file | bytes | SHA-256 |",
        "|---|---|---|",
    ]
    for f, h in card["files"].items():
        L.append(f"| `{f}` | {card['sizes_bytes'][f]} | `{h}` |")
    a = card["architecture"]
    L += [
        "",
        "## What it does",
        "Input: one customer utterance (8 kHz telephone or 16 kHz headset audio). Output: one of "
        f"{', '.join(card['spec']['labels'])} (calm counts as neutral) with a calibrated confidence, "
        "`uncertain` flag, intensity, arousal and valence.",
        "",
        f"Architecture: {a['type']}: {a['members']} MLPs (ReLU, hidden {a['hidden']}), {a['linear_member']}; "
        f"{a['parameters']} parameters; {a['inputs']}; heads: {a['heads']}.",
        "",
        "Features (runtime frontend `appliance.features`, computed by `appliance.emotion.model.utterance_features`): "
        "mean/std/delta-std of 40 log-mel bands and 13 MFCCs over active frames (within 30 dB of the loudest), "
        "frame-energy statistics, all `features.functionals`, MFCC/mel statistics over voiced (`yin_pitch`) and unvoiced "
        "frames, MFCC/pitch/energy means per third of the utterance, pitch range and energy shape. "
        + (
            f"Speech embedding (`appliance.emotion.embedding`, card section `embedding`): mean and standard "
            f"deviation of the bundled Whisper tiny.en encoder's frames over the utterance ({card['spec']['embedding']['dim']} "
            f"numbers), encoder window at least {card['spec']['embedding']['min_window_s']} s, encoder pinned by SHA-256. "
            if card["spec"].get("embedding")
            else ""
        )
        + "Causal per-call normalisation: utterance k is "
        "z-scored with the running mean/variance of utterances before it in the same call, shrunk towards a "
        "training-set prior (mean prior weight 4 utterances, variance 12), per sample rate.",
        "",
        "Outputs:",
    ]
    for k, v in card["outputs"].items():
        L.append(f"- {k}: {v}")
    L.append(f"- circumplex (arousal, valence): {card['spec']['circumplex']}")
    L += [
        "",
        "## Training data and licence",
        f"{card['training']['data']}. Licence: {card['training']['data_licence']}.",
        "",
        card["licence_note"],
        "",
        f"Channel simulation during training: {', '.join(card['training']['channel_variants'])} "
        "(clean 16 kHz; headset gain/noise; telephone 300-3400 Hz, 8 kHz, line noise, gain, G.711 mu-law; "
        "speed-perturbed headset/telephone copies, playback speed 0.90-1.10 fixed per speaker, as extra pseudo-speakers).",
    ]
    if s:
        L += [
            "",
            "## Evaluation (speakers held out)",
            card["cv"]["protocol"] + ".",
            "",
            "| fold | held-out speakers | 16k UAR | 16k arousal UAR | phone UAR | phone arousal UAR | 16k UAR int8 | phone UAR int8 | 16k arousal int8 | phone arousal int8 |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for f in card["cv"]["folds"]:
            L.append(
                f"| {f['fold']} | {', '.join(x.split('_')[-1] for x in f['speakers'])} | {f['16k']['uar']:.3f} | "
                f"{f['16k']['arousal_uar']:.3f} | {f['phone']['uar']:.3f} | {f['phone']['arousal_uar']:.3f} | "
                f"{f['16k']['uar_int8']:.3f} | {f['phone']['uar_int8']:.3f} | "
                f"{f['16k'].get('arousal_uar_int8', float('nan')):.3f} | {f['phone'].get('arousal_uar_int8', float('nan')):.3f} |"
            )
        L.append(
            f"| all (pooled) | | {s['16k']['uar']:.3f} | {s['16k']['arousal_uar']:.3f} | {s['phone']['uar']:.3f} | "
            f"{s['phone']['arousal_uar']:.3f} | {s['16k']['uar_int8']:.3f} | {s['phone']['uar_int8']:.3f} | "
            f"{s['16k'].get('arousal_uar_int8', float('nan')):.3f} | {s['phone'].get('arousal_uar_int8', float('nan')):.3f} |"
        )
        if "arousal_threshold" in s:
            L += [
                "",
                f"Arousal UAR (binary high/low): {card['outputs']['arousal']}. In the CV each held-out fold is "
                "decided at the threshold chosen on the other folds' out-of-fold scores (cross-fitted); the shipped "
                f"threshold {s['arousal_threshold']:+.3f} is chosen on all of them. Other arousal scores, decided at 0 "
                f"(16k / phone): class sum {s['16k']['arousal_uar_class_sum']:.3f} / {s['phone']['arousal_uar_class_sum']:.3f}, "
                f"circumplex {s['16k']['arousal_uar_circumplex']:.3f} / {s['phone']['arousal_uar_circumplex']:.3f}, "
                f"arousal head {s['16k']['arousal_uar_head']:.3f} / {s['phone']['arousal_uar_head']:.3f}.",
            ]
        L += [
            "",
            f"First utterance of a call (prior only): 16k UAR {s['16k']['uar_first_utterance']:.3f}, phone "
            f"{s['phone']['uar_first_utterance']:.3f}; later utterances: 16k {s['16k']['uar_later_utterances']:.3f}, "
            f"phone {s['phone']['uar_later_utterances']:.3f}.",
            "",
            f"Calibration: temperature T = {s['temperature']:.3f}; ECE (10 bins) before -> after: 16k "
            f"{s['16k']['ece_before']:.3f} -> {s['16k']['ece_after']:.3f}, phone {s['phone']['ece_before']:.3f} -> "
            f"{s['phone']['ece_after']:.3f}. Uncertain (confidence < {card['spec']['uncertain_threshold']}): "
            f"{100 * s['16k']['uncertain_fraction']:.0f}% of 16k, {100 * s['phone']['uncertain_fraction']:.0f}% of phone "
            f"utterances; accuracy on the rest {s['16k']['accuracy_when_certain']:.3f} / {s['phone']['accuracy_when_certain']:.3f}.",
        ]
        q = card["quantisation"]
        L += [
            "",
            "## fp32 vs int8 (latency per 1 s window, median, 1 thread)",
            "",
            "| | 16k UAR | phone UAR | 16k total ms | 16k ONNX ms | phone total ms | phone ONNX ms | bytes |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for v in ("fp32", "int8"):
            d = q[v]
            L.append(
                f"| {v} | {d['uar']['16k']:.3f} | {d['uar']['phone']:.3f} | {d['latency_1s_window']['16k']['total_ms']} | "
                f"{d['latency_1s_window']['16k']['onnx_ms']} | {d['latency_1s_window']['phone']['total_ms']} | "
                f"{d['latency_1s_window']['phone']['onnx_ms']} | {d['bytes']} |"
            )
        L += ["", q["method"] + ". " + q["latency_note"] + "."]
    L += [
        "",
        "## Limits",
        "- Acted speech (two sentences, 20 North-American actors): expect lower accuracy on spontaneous call audio; "
        "UAR on other corpora and real calls is unmeasured here.",
        "- The first utterance of a call is scored with the training-set prior only; accuracy improves as the call's "
        "statistics accumulate.",
        "- Emotion recognition of employees is restricted in the EU (AI Act): the appliance scores the customer channel only.",
        "",
        f"Report plot: {card['report_plot']}. Created {card['created']}; training took {card['training']['duration_s']} s.",
    ]
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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


if __name__ == "__main__":
    raise SystemExit(main())
