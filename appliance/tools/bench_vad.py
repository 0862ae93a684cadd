"""`appliance bench vad`: how much speech the VAD's cuts clip, per pre-roll and hangover, on
real telephone recordings (no reference transcript needed).

Why: a cut that starts after the first phoneme or ends before the last one costs the recogniser
the word ("...ay" for "okay"), and the bench's WER sets are too small to see it. Here the
reference is Silero VAD run over the whole channel: every 32 ms chunk it calls speech
(p >= 0.5) that no cut covers is clipped speech, counted as an onset (within 0.5 s before a
cut), an ending (within 0.5 s after one) or missed (elsewhere). Longer pre-roll and hangover
clip less but make longer, fewer utterances (later scores); the table shows both.

    appliance bench vad [--preroll 0.1 0.2 0.3 0.4] [--hangover 0.3 0.5 0.7 0.9] [--json]

Recordings: the AWS sample call 40 (agent and caller), the three LCA agent recordings (8 kHz)
and the Azure custom-speech files (16 kHz read prose) in ../shared/data/realcalls.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from appliance.config import VadConfig
from appliance.segment.vad import SILERO_CHUNK, SILERO_SR, Segmenter, SpeechDetector
from appliance.tools.stt_sets import SHARED, read_audio

EDGE_S = 0.5
RECORDINGS = (
    "realcalls/aws/Auto_Repairs_40_UTC_agent.wav",
    "realcalls/aws/Auto_Repairs_40_UTC_caller.wav",
    "realcalls/aws/lca_demo_agent_only/agent.wav",
    "realcalls/aws/lca_demo_agent_only/agent1.wav",
    "realcalls/aws/lca_demo_agent_only/agent2.wav",
    "realcalls/azure/custom_speech_en_general/test_audio.wav",
    "realcalls/azure/custom_speech_en_general/train_audio1.wav",
    "realcalls/azure/custom_speech_en_general/train_audio2.wav",
)


def speech_chunks(x: np.ndarray, sr: int, threshold: float = 0.5) -> np.ndarray:
    """Start times (s) of the 32 ms chunks Silero calls speech, over the whole channel."""
    p = SpeechDetector.shared().probabilities(x, sr)
    return np.flatnonzero(p >= threshold) * (SILERO_CHUNK / SILERO_SR)


def cuts(x: np.ndarray, sr: int, vad: VadConfig) -> list[tuple[float, float]]:
    seg = Segmenter(sr, vad)
    out = []
    hop = sr // 50
    for i in range(0, x.size, hop):
        out += [(s.start, s.end) for s in seg.push(x[i : i + hop])]
    out += [(s.start, s.end) for s in seg.flush()]
    return out


def clipped(chunks: np.ndarray, segs: list[tuple[float, float]]) -> dict[str, float]:
    """Seconds of speech chunks outside every cut: onset, ending, missed."""
    step = SILERO_CHUNK / SILERO_SR
    out = {"onset": 0.0, "ending": 0.0, "missed": 0.0}
    starts = np.array([a for a, _ in segs]) if segs else np.zeros(0)
    ends = np.array([b for _, b in segs]) if segs else np.zeros(0)
    for t in chunks:
        mid = t + step / 2
        if np.any((starts <= mid) & (mid < ends)):
            continue
        after = starts[starts > mid]
        before = ends[ends <= mid]
        if after.size and after.min() - mid <= EDGE_S:
            out["onset"] += step
        elif before.size and mid - before.max() <= EDGE_S:
            out["ending"] += step
        else:
            out["missed"] += step
    return out


def sweep(
    recordings: list[tuple[str, np.ndarray, int]],
    prerolls: Sequence[float],
    hangovers: Sequence[float],
    threshold: float = 0.5,
) -> list[dict]:
    refs = [(name, x, sr, speech_chunks(x, sr, threshold)) for name, x, sr in recordings]
    speech_s = sum(len(c) for *_r, c in refs) * SILERO_CHUNK / SILERO_SR
    rows = []
    for pre, hang in itertools.product(prerolls, hangovers):
        vad = dataclasses.replace(VadConfig(), preroll=pre, hangover=hang)
        total = {"onset": 0.0, "ending": 0.0, "missed": 0.0}
        n, dur = 0, 0.0
        for _name, x, sr, chunks in refs:
            segs = cuts(x, sr, vad)
            n += len(segs)
            dur += sum(b - a for a, b in segs)
            for k, v in clipped(chunks, segs).items():
                total[k] += v
        rows.append(
            {
                "preroll": pre,
                "hangover": hang,
                "speech_s": round(speech_s, 1),
                "clipped_onset_pct": round(100 * total["onset"] / speech_s, 2),
                "clipped_ending_pct": round(100 * total["ending"] / speech_s, 2),
                "missed_pct": round(100 * total["missed"] / speech_s, 2),
                "utterances": n,
                "mean_utterance_s": round(dur / max(n, 1), 2),
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="appliance bench vad", description=__doc__)
    ap.add_argument("--preroll", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4])
    ap.add_argument("--hangover", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="Silero probability from which a reference chunk is speech (lower: weak onsets count)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    recs = []
    for rel in RECORDINGS:
        path = args.data / rel
        if path.is_file():
            x, sr = read_audio(path)
            recs.append((rel, x, sr))
    if not recs:
        print(f"error: no recordings under {args.data}", file=sys.stderr)
        return 2
    rows = sweep(recs, args.preroll, args.hangover, args.threshold)
    if args.json:
        print(json.dumps(rows))
        return 0
    print(
        f"{len(recs)} recordings, {rows[0]['speech_s']} s of speech "
        f"(Silero chunks at p >= {args.threshold})"
    )
    print(f"{'preroll':>7} {'hangover':>8} {'onset %':>8} {'ending %':>8} {'missed %':>8} "
          f"{'utts':>5} {'mean s':>6}")  # fmt: skip
    for r in rows:
        print(
            f"{r['preroll']:>7.2f} {r['hangover']:>8.2f} {r['clipped_onset_pct']:>8.2f} "
            f"{r['clipped_ending_pct']:>8.2f} {r['missed_pct']:>8.2f} {r['utterances']:>5} "
            f"{r['mean_utterance_s']:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
