"""The ensemble's members: MLPs (torch, CPU) and the per-rate shrinkage LDA."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import N_CLS, Config
from .data import Clip


@dataclass
class _Batches:
    """Training tensors of the MLPs: inputs (masked), class / arousal / intensity targets."""

    X: Any
    y: Any
    arousal: Any
    intensity: Any
    keep: Any  # 1 for inputs the MLP sees, 0 for the globally scaled branch
    class_weight: np.ndarray


def z_columns(nf: int, cfg: Config) -> np.ndarray:
    """Which of the `nf` causal z-score columns the members use (bool): all, or all but the
    embedding's means when `cfg.embedding_mean_inputs` is off (frontend features come first, then
    the embedding's means, then its standard deviations)."""
    use = np.ones(nf, dtype=bool)
    if not cfg.embedding_mean_inputs:
        from appliance.emotion import model as E

        n_front = len(E.feature_names())
        half = (nf - n_front) // 2
        use[n_front : n_front + half] = False
    return use


def _tensors(Z: np.ndarray, ix: np.ndarray, clips: list[Clip], cfg: Config) -> _Batches:
    import torch

    y = np.array([clips[i].label for i in ix])
    ar = np.array([clips[i].arousal for i in ix], dtype=np.float32)
    it = np.array([clips[i].intensity for i in ix], dtype=np.float32)
    counts = np.bincount(y[y >= 0], minlength=N_CLS).astype(np.float64)
    cw = np.where(counts > 0, counts.sum() / (N_CLS * np.maximum(counts, 1)), 0.0)
    nf = (Z.shape[1] - 1) // 2
    keep = torch.ones(Z.shape[1])
    if not cfg.global_inputs:
        keep[nf : 2 * nf] = 0.0  # the globally scaled branch (speaker identity) is not an MLP input
    keep[:nf] = torch.from_numpy(z_columns(nf, cfg).astype(np.float32))
    Xt = torch.from_numpy(Z.astype(np.float32)) * keep
    return _Batches(Xt, torch.from_numpy(y), torch.from_numpy(ar), torch.from_numpy(it), keep, cw)


def _new_net(dim: int, cfg: Config):
    from torch import nn

    h1, h2 = cfg.hidden
    return nn.Sequential(
        nn.Dropout(cfg.input_dropout),
        nn.Linear(dim, h1),
        nn.ReLU(),
        nn.Dropout(cfg.dropout),
        nn.Linear(h1, h2),
        nn.ReLU(),
        nn.Dropout(cfg.dropout),
        nn.Linear(h2, N_CLS + 2),
    )


def _batch_loss(out, b, d: _Batches, ce, bce, cfg: Config):
    """Class cross-entropy + weighted arousal and intensity BCE on the rows that have them."""
    loss = ce(out[:, :N_CLS], d.y[b]) if (d.y[b] >= 0).any() else out.sum() * 0
    ma = d.arousal[b] >= 0
    if ma.any():
        loss = loss + cfg.w_arousal * bce(out[:, N_CLS + 1][ma], d.arousal[b][ma]).mean()
    mi = d.intensity[b] >= 0
    if mi.any():
        loss = loss + cfg.w_intensity * bce(out[:, N_CLS][mi], d.intensity[b][mi]).mean()
    return loss


def _fit_member(m: int, d: _Batches, cfg: Config, bar) -> dict:
    """Train member `m` (its own seeds) and return its weights as numpy arrays."""
    import torch
    from torch import nn

    ce = nn.CrossEntropyLoss(
        weight=torch.tensor(d.class_weight, dtype=torch.float32),
        ignore_index=-1,
        label_smoothing=cfg.label_smoothing,
    )
    bce = nn.BCEWithLogitsLoss(reduction="none")
    steps_per_epoch = int(np.ceil(len(d.X) / cfg.batch))
    torch.manual_seed(cfg.seed * 100 + m)
    net = _new_net(d.X.shape[1], cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch
    )
    g = torch.Generator().manual_seed(cfg.seed * 1000 + m)
    for _ep in range(cfg.epochs):
        net.train()
        perm = torch.randperm(len(d.X), generator=g)
        for s in range(steps_per_epoch):
            b = perm[s * cfg.batch : (s + 1) * cfg.batch]
            xb = d.X[b]
            xb = (xb + cfg.input_noise * torch.randn(xb.shape, generator=g)) * d.keep
            loss = _batch_loss(net(xb), b, d, ce, bce, cfg)
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
    w["W0"] *= d.keep.numpy()[:, None]  # exactly zero weight on inputs the MLP never saw
    return w


def train_members(
    Z: np.ndarray,
    ix: np.ndarray,
    clips: list[Clip],
    cfg: Config,
    desc: str = "train",
    progress: bool = True,
) -> list[dict]:
    """Train `cfg.members` MLPs with different seeds; returns a list of numpy weight dicts."""
    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    d = _tensors(Z, ix, clips, cfg)
    bar = tqdm(
        total=cfg.members * cfg.epochs, desc=desc, unit="ep", leave=False, disable=not progress
    )
    members = [_fit_member(m, d, cfg, bar) for m in range(cfg.members)]
    bar.close()
    return members


def _fit_lda(
    Zz: np.ndarray,
    y: np.ndarray,
    dim: int,
    shrinkage: float | str = "auto",
    cols: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """LDA on the columns `cols` (bool over Zz's columns; None = all) of Zz, as weights over all
    `dim` model inputs (zero elsewhere)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    idx = np.flatnonzero(cols) if cols is not None else np.arange(Zz.shape[1])
    Zz = Zz[:, idx]

    present = np.unique(y)
    lda = LinearDiscriminantAnalysis(
        solver="lsqr", shrinkage=shrinkage, priors=np.full(len(present), 1.0 / len(present))
    )
    lda.fit(Zz, y)
    W = np.zeros((dim, N_CLS), dtype=np.float32)
    b = np.full(N_CLS, -30.0, dtype=np.float32)  # classes absent from the training data
    W[np.ix_(idx, lda.classes_)] = lda.coef_.T
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
    cols = z_columns(nf, cfg)
    out = {"weight": cfg.linear_weight}
    if cfg.linear_per_rate and len(np.unique(y[m & is8])) > 1 and len(np.unique(y[m & ~is8])) > 1:
        out["W"], out["b"] = _fit_lda(
            Z[m & ~is8, :nf], y[m & ~is8], Z.shape[1], cfg.linear_shrinkage_16k, cols
        )
        out["W8"], out["b8"] = _fit_lda(
            Z[m & is8, :nf], y[m & is8], Z.shape[1], cfg.linear_shrinkage_8k, cols
        )
    else:
        out["W"], out["b"] = _fit_lda(Z[m, :nf], y[m], Z.shape[1], cols=cols)
    return out


def forward_numpy(members, Z: np.ndarray) -> np.ndarray:
    """Mean head outputs over the ensemble (pre-activation): float[n, N_CLS + 2]."""
    acc = 0.0
    for w in members:
        h = np.maximum(Z @ w["W0"] + w["b0"], 0)
        h = np.maximum(h @ w["W1"] + w["b1"], 0)
        acc = acc + h @ w["W2"] + w["b2"]
    return acc / len(members)
