"""Training data: the manifest, the simulated channel variants of each clip, and the cached raw
features (runtime frontend + speech embedding) extracted through the live code path."""

from __future__ import annotations

import csv
import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.emotion import model as E
from appliance.tools.emotion_eval import arousal_of, normalise_label, read_audio

from .channel import make_variant
from .config import LABELS


@dataclass
class Clip:
    path: str  # as in the manifest
    abspath: Path
    label: int  # -1: outside the model's label set
    arousal: int  # -1 unknown
    intensity: float  # target in 0..1, -1 unknown
    group: str  # speaker (CV grouping)
    call: str  # "" = form pseudo-calls
    source: str = "main"  # "anchor": a neutral anchor (trained on, kept out of the CV metrics)


def load_manifest(manifest: Path, source: str = "main") -> list[Clip]:
    """Clips of a manifest CSV (`source` "anchor" for the neutral-anchor manifest)."""
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
                source,
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
