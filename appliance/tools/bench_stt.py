"""WER and real-time factor of the STT engines on reference clips.

Why a script and not only a test: the numbers in docs/stt.md must be reproducible on each
target (Pi 5, Orin, x86) with one command, and the beam size / thread count chosen from them.

    python -m appliance.tools.bench_stt [--data DIR] [--beam 1 --beam 5] [--vosk-model DIR]

DIR holds WAV clips and a Sphinx-format `transcription` file (`<s> words </s> (file-id)`), as in
the pocketsphinx test data (default: ../shared/data/speech/librivox next to the repository).
Each clip is decoded at its own rate ("16k") and after a telephone channel ("8k-mulaw":
resample to 8 kHz + G.711 mu-law round trip). RTF = decode seconds / audio seconds.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from appliance.capture.resample import telephone_channel

__all__ = ["main", "normalise_text", "wer", "word_errors", "read_sphinx_transcription", "read_wav"]

_DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "librivox"
# Spellings that differ only in form between a recogniser and a reference transcript.
_CANON = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "ok": "okay"}


def normalise_text(text: str) -> list[str]:
    """Lower-case, hyphens to spaces, punctuation stripped, a few abbreviations expanded."""
    t = text.lower().replace("-", " ")
    t = re.sub(r"[^\w\s']", " ", t)
    t = t.replace("'", "")
    return [_CANON.get(w, w) for w in t.split()]


def word_errors(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance over words (substitutions + deletions + insertions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate: total edit distance / total reference words (normalised text)."""
    errors = 0
    total = 0
    for r, h in zip(refs, hyps, strict=True):
        rw, hw = normalise_text(r), normalise_text(h)
        errors += word_errors(rw, hw)
        total += len(rw)
    return errors / max(total, 1)


def read_sphinx_transcription(path: Path) -> dict[str, str]:
    """{file-id: reference text} from `<s> words </s> (file-id)` lines."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\(([^)]+)\)\s*$", line)
        if m:
            out[m.group(2).strip()] = " ".join(m.group(1).split())
    return out


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV to mono float32 in [-1, 1] (stdlib only: the box has no soundfile)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        sr = w.getframerate()
        ch = w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)
    if ch > 1:
        data = data.reshape(-1, ch).mean(axis=1)
    return data / 32768.0, sr


def _load_clips(data: Path) -> list[tuple[str, np.ndarray, int, str]]:
    refs = read_sphinx_transcription(data / "transcription")
    clips = []
    for fid, ref in sorted(refs.items()):
        wav = data / f"{fid}.wav"
        if wav.is_file():
            x, sr = read_wav(wav)
            clips.append((fid, x, sr, ref))
    return clips


def _run(transcriber, clips, condition: str) -> tuple[float, float]:
    refs, hyps = [], []
    audio_s = 0.0
    decode_s = 0.0
    for _fid, x, sr, ref in clips:
        if condition == "8k-mulaw":
            x, sr = telephone_channel(x, sr), 8000
        t0 = time.perf_counter()
        tr = transcriber.transcribe(x, sr)
        decode_s += time.perf_counter() - t0
        audio_s += len(x) / sr
        refs.append(ref)
        hyps.append(tr.text)
    return wer(refs, hyps), decode_s / max(audio_s, 1e-9)


def main(argv: Sequence[str] | None = None) -> int:
    """Print a table: engine, beam, condition, WER, RTF. Returns 0, or 2 without data."""
    from appliance.stt.vosk import VoskTranscriber
    from appliance.stt.whisper import WhisperTranscriber

    ap = argparse.ArgumentParser(prog="python -m appliance.tools.bench_stt", description=__doc__)
    ap.add_argument("--data", type=Path, default=_DEFAULT_DATA)
    ap.add_argument("--beam", type=int, action="append", help="Whisper beam size(s); default 1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--whisper-model", default="")
    ap.add_argument("--vosk-model", default="", help="also measure this Vosk model")
    args = ap.parse_args(argv)
    if not (args.data / "transcription").is_file():
        print(f"error: no {args.data / 'transcription'}", file=sys.stderr)
        return 2
    clips = _load_clips(args.data)
    if not clips:
        print(f"error: no clips in {args.data}", file=sys.stderr)
        return 2
    engines = []
    for beam in args.beam or [1]:
        t = WhisperTranscriber(args.whisper_model or None, threads=args.threads, beam_size=beam)
        engines.append((f"whisper tiny.en beam={beam}", t))
    if args.vosk_model:
        engines.append((f"vosk {Path(args.vosk_model).name}", VoskTranscriber(args.vosk_model)))
    total_s = sum(len(x) / sr for _f, x, sr, _r in clips)
    print(f"{len(clips)} clips, {total_s:.1f} s of audio, threads={args.threads}")
    print(f"{'engine':<28} {'condition':<10} {'WER':>6} {'RTF':>6}")
    for name, t in engines:
        t.transcribe(clips[0][1][: clips[0][2]], clips[0][2])  # warm-up, not timed
        for condition in ("16k", "8k-mulaw"):
            w, rtf = _run(t, clips, condition)
            print(f"{name:<28} {condition:<10} {w:>6.3f} {rtf:>6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
