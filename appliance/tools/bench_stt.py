"""`appliance bench stt`: word error rate per real set and real-time factor per model.

Why a benchmark and not only a test: the figures in docs/stt.md must be reproducible on each
target (Pi 4, Pi 5, Orin, x86) with one command, and the model per board chosen from them.

    appliance bench stt [--set NAME ...] [--model tiny.en --model base] [--mode both]
                        [--limit N] [--telephone] [--json] [--data DIR]

Two ways of decoding the same audio (`--mode`):
- `whole`: each clip decoded in one piece (`transcribe`), the recogniser's own accuracy;
- `analyze`: the clips of a set joined into calls (in a seeded shuffled order, or by name
  with `--in-order`; 1 s of line noise before, between and after them, at most 60 s of speech
  a call) and run through `appliance analyze`'s pipeline on the customer channel: the VAD's
  cuts, the fitted window, the context, redaction, the writer. What is lost between the two
  is the pipeline's own doing.

Sets are in `appliance.tools.stt_sets` (gold references pooled per set, silver reported apart).
WER is corpus WER over normalised words (`appliance.tools.wer`); the word count is printed
beside every figure. Through `analyze` the text is the stored, redacted text: a redaction tag
where the reference has digits counts as an error, and the number of tags is printed beside
it. RTF = decode seconds / audio seconds of the `whole` run, one thread.
`--telephone` also decodes each 16 kHz clip after a telephone channel (8 kHz + G.711 mu-law).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from appliance.capture.resample import telephone_channel
from appliance.stt.redact_numbers import is_tag
from appliance.tools.stt_sets import (
    SETS,
    Clip,
    load_set,
    normalise_text,
    read_audio,
    read_sphinx_transcription,
    wer,
    word_errors,
)

__all__ = ["main", "normalise_text", "wer", "word_errors", "read_sphinx_transcription", "read_wav"]

#: The issue's floors, through `analyze`: (set, most WER).
FLOORS = {"asterisk": 0.05, "custom_speech": 0.06}
#: ... and at most this much worse than decoding the same clips whole.
MAX_PIPELINE_LOSS = 0.01
GAP_S = 1.0
CALL_SPEECH_S = 60.0


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 of a WAV file (kept for callers of the old bench)."""
    return read_audio(Path(path))


def _custom_set(folder: Path) -> list[Clip]:
    """A folder with a Sphinx-format `transcription` (`<s> words </s> (file-id)`) and WAVs."""
    refs = read_sphinx_transcription(folder / "transcription")
    return [
        Clip(folder.name, fid, *read_audio(folder / f"{fid}.wav"), ref)
        for fid, ref in sorted(refs.items())
        if (folder / f"{fid}.wav").is_file()
    ]


def _telephone(clips: list[Clip]) -> list[Clip]:
    return [
        Clip(f"{c.set}@8k-mulaw", c.id, telephone_channel(c.audio, c.sr), 8000, c.ref, c.silver)
        for c in clips
        if c.sr != 8000
    ]


def decode_whole(transcriber, clips: list[Clip]) -> tuple[list[str], float]:
    """(hypotheses, decode seconds) of each clip decoded in one piece."""
    hyps, took = [], 0.0
    for c in clips:
        t0 = time.perf_counter()
        hyps.append(transcriber.transcribe(c.audio, c.sr).text)
        took += time.perf_counter() - t0
    return hyps, took


def join_calls(
    clips: list[Clip], seed: int = 0, in_order: bool = False
) -> list[tuple[np.ndarray, int, str]]:
    """Clips of one rate joined into calls: (audio, sr, reference). Line noise at -70 dBFS
    fills the gaps (digital silence is not what a line carries).

    The clips go in a shuffled order (fixed by `seed`) unless `in_order`: a set sorted by name
    puts its number prompts side by side ("zero, one, ten, eleven, ..." 40 in a row), which no
    caller says and which the call's redaction rightly withholds as a possible card number; a
    shuffled call hears numbers the way a call does, a few at a time."""
    rng = np.random.default_rng(seed)
    if not in_order:
        clips = [clips[i] for i in rng.permutation(len(clips))]
    calls, cur, refs, speech = [], [], [], 0.0
    sr = clips[0].sr if clips else 16000

    def gap() -> np.ndarray:
        return (rng.standard_normal(int(GAP_S * sr)) * 10 ** (-70 / 20)).astype(np.float32)

    def close() -> None:
        if cur:
            calls.append((np.concatenate([*cur, gap()]), sr, " ".join(refs)))

    for c in clips:
        if c.sr != sr:
            raise ValueError(f"{c.set}: clips at {c.sr} and {sr} Hz cannot share a call")
        if cur and speech + c.duration > CALL_SPEECH_S:
            close()
            cur, refs, speech = [], [], 0.0
        cur += [gap(), c.audio.astype(np.float32)]
        refs.append(c.ref)
        speech += c.duration
    close()
    return calls


def decode_analyze(
    session, clips: list[Clip], in_order: bool = False
) -> tuple[list[str], list[str]]:
    """(references, hypotheses) per joined call through the live pipeline (customer channel)."""
    from appliance.capture.wav import Recording
    from appliance.pipeline.call import CallMeta

    refs, hyps = [], []
    for audio, sr, ref in join_calls(clips, in_order=in_order):
        call = session.replay(Recording((audio,), sr), ["customer"], CallMeta(), source="bench")
        texts = [u["text"] or "" for u in sorted(call.results, key=lambda u: u["start"])]
        refs.append(ref)
        hyps.append(" ".join(t for t in texts if t))
    return refs, hyps


def _analysis_session(model: str, threads: int, beam: int, overrides: dict, db: Path):
    from appliance.config import config_from_dict
    from appliance.ops.analysis import Session
    from appliance.ops.engines import load_engines

    cfg = config_from_dict(
        {
            "stt": {"engine": "whisper", "model": model, "threads": threads, "beam_size": beam}
            | overrides.get("stt", {}),
            "vad": overrides.get("vad", {}),
        }
    )
    return Session(cfg, db, load_engines(cfg))


def run(
    sets: dict[str, list[Clip]],
    models: Sequence[str],
    mode: str,
    threads: int = 1,
    beam: int = 1,
    overrides: dict | None = None,
    progress=None,
    in_order: bool = False,
) -> list[dict]:
    """One row per (model, set): words, WER whole / analyze, RTF."""
    from appliance.stt.whisper import WhisperTranscriber

    say = progress or (lambda _m: None)
    rows = []
    ov = overrides or {}
    for model in models:
        stt = ov.get("stt", {})
        tr = WhisperTranscriber(
            threads=threads,
            beam_size=beam,
            model=model,
            language=stt.get("language", "en"),
        )
        first = next(iter(c for cl in sets.values() for c in cl), None)
        if first is not None:
            tr.transcribe(first.audio[: first.sr], first.sr)  # warm-up, not timed
        tmp = tempfile.TemporaryDirectory(prefix="bench-stt-")
        session = None
        if mode in ("analyze", "both"):
            session = _analysis_session(model, threads, beam, ov, Path(tmp.name) / "bench.db")
        try:
            for name, clips in sets.items():
                if not clips:
                    continue
                row: dict = {
                    "model": model,
                    "set": name,
                    "silver": any(c.silver for c in clips),
                    "clips": len(clips),
                    "words": sum(len(normalise_text(c.ref)) for c in clips),
                    "audio_s": round(sum(c.duration for c in clips), 1),
                }
                if mode in ("whole", "both"):
                    say(f"{model} {name}: decoding {len(clips)} clips whole")
                    hyps, took = decode_whole(tr, clips)
                    row["wer_whole"] = round(wer([c.ref for c in clips], hyps), 4)
                    row["rtf"] = round(took / max(row["audio_s"], 1e-9), 4)
                if session is not None and not name.endswith("@8k-mulaw"):
                    say(f"{model} {name}: through the pipeline")
                    refs, hyps = decode_analyze(session, clips, in_order)
                    row["wer_analyze"] = round(wer(refs, hyps), 4)
                    # redaction is counted as stored (a tag is an error where the reference has
                    # words); how many tags there are is printed so the cost is seen, not hidden
                    row["redaction_tags"] = sum(is_tag(t) for h in hyps for t in h.split())
                rows.append(row)
                say(json.dumps(row))
        finally:
            if session is not None:
                session.close()
            tmp.cleanup()
    return rows


def floors(rows: list[dict]) -> list[tuple[str, bool]]:
    """The issue's floors per model: (description, held)."""
    out = []
    for r in rows:
        if r["set"] in FLOORS and "wer_analyze" in r:
            out.append(
                (
                    f"{r['model']} {r['set']}: analyze WER {r['wer_analyze']:.3f} <= {FLOORS[r['set']]}",
                    r["wer_analyze"] <= FLOORS[r["set"]],
                )
            )
        if "wer_analyze" in r and "wer_whole" in r and not r["silver"]:
            loss = r["wer_analyze"] - r["wer_whole"]
            out.append(
                (
                    f"{r['model']} {r['set']}: pipeline loss {loss * 100:+.1f} points <= {MAX_PIPELINE_LOSS * 100:.0f}",
                    loss <= MAX_PIPELINE_LOSS + 1e-9,
                )
            )
    return out


def _table(rows: list[dict]) -> str:
    def f(v) -> str:
        return "-" if v is None else f"{v:.3f}"

    lines = [
        f"{'model':<8} {'set':<24} {'ref':<6} {'clips':>5} {'words':>6} {'audio_s':>8} "
        f"{'WER whole':>9} {'WER analyze':>11} {'tags':>4} {'RTF':>6}"
    ]
    for silver in (False, True):
        for r in rows:
            if r["silver"] != silver:
                continue
            lines.append(
                f"{r['model']:<8} {r['set']:<24} {'silver' if silver else 'gold':<6} "
                f"{r['clips']:>5} {r['words']:>6} {r['audio_s']:>8.1f} {f(r.get('wer_whole')):>9} "
                f"{f(r.get('wer_analyze')):>11} {r.get('redaction_tags', '-'):>4} "
                f"{f(r.get('rtf')):>6}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table (or --json). Returns 0, or 2 when no set has data."""
    ap = argparse.ArgumentParser(prog="appliance bench stt", description=__doc__)
    ap.add_argument("--set", action="append", choices=SETS, help="a set (default: all present)")
    ap.add_argument("--data", type=Path, action="append", help="a Sphinx-format folder as a set")
    ap.add_argument("--model", action="append", choices=("tiny.en", "base"))
    ap.add_argument("--mode", choices=("whole", "analyze", "both"), default="both")
    ap.add_argument("--limit", type=int, default=0, help="first N clips of each set")
    ap.add_argument("--telephone", action="store_true", help="16 kHz sets also at 8k-mulaw")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--beam", type=int, default=1)
    ap.add_argument("--preroll", type=float, help="vad.preroll for the analyze run")
    ap.add_argument("--hangover", type=float, help="vad.hangover for the analyze run")
    ap.add_argument("--max-utterance", type=float, help="vad.max_utterance for the analyze run")
    ap.add_argument("--context", action="store_true", help="stt.context = true")
    ap.add_argument("--no-context", action="store_true", help="stt.context = false")
    ap.add_argument(
        "--in-order", action="store_true", help="analyze: calls of clips sorted by name"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    sets: dict[str, list[Clip]] = {}
    if args.data:
        for folder in args.data:
            if not (folder / "transcription").is_file():
                print(f"error: no {folder / 'transcription'}", file=sys.stderr)
                return 2
            sets[folder.name] = _custom_set(folder)
    else:
        for name in args.set or SETS:
            sets[name] = load_set(name)
    if args.limit:
        sets = {k: v[: args.limit] for k, v in sets.items()}
    if args.telephone:
        sets.update({f"{k}@8k-mulaw": _telephone(v) for k, v in list(sets.items())})
    sets = {k: v for k, v in sets.items() if v}
    if not sets:
        print("error: no clips (is ../shared/data there?)", file=sys.stderr)
        return 2
    vad = {
        k: v
        for k, v in (
            ("preroll", args.preroll),
            ("hangover", args.hangover),
            ("max_utterance", args.max_utterance),
        )
        if v is not None
    }
    # partials cost decodes and change no final text: off here (`time to first keyword` is
    # measured apart, tests/test_stt_partials.py)
    stt: dict = {"partials": False}
    if args.context or args.no_context:  # else the config's default, as the box runs
        stt["context"] = bool(args.context)
    overrides = {"vad": vad, "stt": stt}
    rows = run(
        sets,
        args.model or ["tiny.en"],
        args.mode,
        args.threads,
        args.beam,
        overrides,
        progress=lambda m: print(m, file=sys.stderr, flush=True),
        in_order=args.in_order,
    )
    checks = floors(rows)
    if args.json:
        print(json.dumps({"rows": rows, "floors": [{"check": c, "held": h} for c, h in checks]}))
    else:
        print(_table(rows))
        for c, held in checks:
            print(f"{'ok  ' if held else 'MISS'} {c}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
