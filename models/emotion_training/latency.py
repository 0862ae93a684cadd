"""Latency of the exported models per 1 s window, as the box runs them."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from appliance.emotion import model as E
from appliance.tools.emotion_eval import read_audio

from .channel import make_variant
from .data import Clip


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
