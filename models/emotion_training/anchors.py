"""Neutral anchors: calm, non-acted speech cut into utterances the way the box cuts them.

Why: RAVDESS is 20 actors reading two sentences in a studio. A model that has heard nothing else
labels ordinary phone speech (an agent's calm professional voice, read prose, short commands)
sad, fearful or angry. Recordings of calm speakers talking normally are the cheapest evidence of
what "neutral" sounds like off the stage. They are labelled neutral (arousal low, intensity 0);
each recording is one call (the causal normalisation sees it in order, as the box would).

Which recordings (all under ../shared/data; licences in their folders): see `ANCHOR_FILES`.
Held out of training so the realism benchmark stays honest: the AWS call 40 (both channels), the
third agent-only demo recording (agent2.wav), the mixed PCA call, Google's and Azure's
conversations, Azure's read-prose test file, LibriSpeech, LibriVox, the Harvard sentences, half of
the AN4 speakers, the hold music and all Asterisk prompts (evaluation only: one speaker, and
CC BY-SA 3.0, whose share-alike terms we do not mix into the model).

    python -m emotion_training.anchors --data ../shared/data --out models/.cache/anchors
"""

from __future__ import annotations

import argparse
import csv
import zlib
from pathlib import Path

import numpy as np

from appliance.capture.wav import read_wav, write_wav
from appliance.config import VadConfig
from appliance.segment.vad import Segmenter

# (path under the data folder, channel index); read_speech/an4_cmu is added by speaker below.
ANCHOR_FILES: tuple[tuple[str, int], ...] = (
    ("realcalls/aws/lca_demo_agent_only/agent.wav", 0),
    ("realcalls/aws/lca_demo_agent_only/agent1.wav", 0),
    ("realcalls/azure/custom_speech_en_general/train_audio1.wav", 0),
    ("realcalls/azure/custom_speech_en_general/train_audio2.wav", 0),
    ("speech/cards/001.wav", 0),
    ("speech/cards/002.wav", 0),
    ("speech/cards/003.wav", 0),
    ("speech/cards/004.wav", 0),
    ("speech/cards/005.wav", 0),
    ("speech/goforward.wav", 0),
    ("speech/vosk_test.wav", 0),
)
AN4 = "read_speech/an4_cmu"


def an4_speaker(path: Path) -> str:
    """AN4 file names are <utterance>-<speaker>-b.wav."""
    return path.stem.split("-")[1]


def an4_is_anchor(path: Path) -> bool:
    """Half of the AN4 speakers (by a fixed hash of the speaker id) train; the rest stay held out."""
    return zlib.crc32(an4_speaker(path).encode()) % 2 == 0


def anchor_files(data: Path) -> list[tuple[str, int]]:
    """Every anchor recording that exists under `data` (relative path, channel)."""
    out = [(p, ch) for p, ch in ANCHOR_FILES if (data / p).exists()]
    if (data / AN4).is_dir():
        out += [
            (str(p.relative_to(data)), 0)
            for p in sorted((data / AN4).glob("*.wav"))
            if an4_is_anchor(p)
        ]
    return out


def segments(path: Path, channel: int) -> tuple[list[np.ndarray], int]:
    """Utterances of one channel as the box's VAD (level + speech check) cuts them."""
    rec = read_wav(path)
    x = rec.channels[min(channel, len(rec.channels) - 1)]
    seg = Segmenter(rec.sample_rate, VadConfig())
    out = []
    for i in range(0, len(x), 320):
        out += seg.push(x[i : i + 320])
    out += seg.flush()
    return [s.audio for s in out], rec.sample_rate


def split_long(
    y: np.ndarray, sr: int, max_s: float = 6.0, piece_s: float = 4.0
) -> list[np.ndarray]:
    """Cut an utterance longer than `max_s` into equal pieces of about `piece_s`: customer turns
    are mostly a few seconds long, and an agent's 12 s monologue is several of them."""
    if len(y) <= max_s * sr:
        return [y]
    n = int(np.ceil(len(y) / (piece_s * sr)))
    return list(np.array_split(y, n))


def build(data: Path, out: Path, min_duration: float = 0.6) -> Path:
    """Write the anchors' utterances as WAVs and a training manifest (neutral, one call per
    recording); returns the manifest's path."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for rel, ch in anchor_files(data):
        utts, sr = segments(data / rel, ch)
        utts = [piece for y in utts for piece in split_long(y, sr)]
        group = "anchor_" + rel.replace("/", "_").removesuffix(".wav")
        if rel.startswith(AN4):
            group = "anchor_an4_" + an4_speaker(Path(rel))
        for k, y in enumerate(utts):
            if len(y) < min_duration * sr:  # the box gives these no emotion either
                continue
            name = f"{rel.replace('/', '_').removesuffix('.wav')}_{k:03d}.wav"
            write_wav(out / name, [y], sr)
            rows.append(
                {
                    "path": name,
                    "emotion": "neutral",
                    "speaker": group,
                    "call": "call_" + rel,
                    "intensity": "",
                    "source": rel,
                }
            )
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="cut the neutral anchor recordings into utterances")
    ap.add_argument("--data", type=Path, required=True, help="the shared data folder")
    ap.add_argument("--out", type=Path, required=True, help="folder for the WAVs and manifest")
    a = ap.parse_args(argv)
    m = build(a.data, a.out)
    n = sum(1 for _ in m.open()) - 1
    print(f"{n} anchor utterances -> {m}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
