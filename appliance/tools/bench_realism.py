"""Realism benchmark: what the box says about real, calm and non-speech audio (no emotion labels).

    appliance bench realism [--json] [--data DIR] [--extra DIR ...] [--asterisk DIR] [--out FILE]

The RAVDESS cross-validation measures acted emotion; it cannot tell a model that invents emotions
on ordinary phone speech from one that does not. This benchmark runs recordings nobody here made
through the live pipeline (`appliance.ops.analysis.analyze_file`: VAD, emotion, STT, fusion, rules)
and reports, per set (the customer channel only):

- the label distribution and the share of uncertain results;
- confident non-neutral labels (confidence >= 0.7, not uncertain) per customer utterance on calm
  speech, and negative labels (sad, angry, fearful, disgust; not uncertain) per labelled utterance;
- confident labels on utterances under 1 s and on backchannels ("mm-hmm", "okay", "thank you");
- warning/critical alerts per hour of calm calls (and which);
- agreement of acoustic valence with text sentiment (sign agreement, Pearson r);
- what non-speech (hold music, tones) produces: utterances, text, emotions.

Sets: `realcalls`, `read_speech`, `nonspeech` under `--data` (default ../shared/data), the Debian
`asterisk-core-sounds-en-wav` prompts when installed (`--asterisk`; a calm professional voice at
8 kHz, CC BY-SA 3.0; evaluation only, never trained on; prompts are joined into calls of 12 with
0.8 s pauses, its tones and silences form the `asterisk_tones` non-speech set), and any `--extra`
folder (each WAV a call, mono = customer, stereo = agent,customer; judged calm).
Progress goes to stderr; `--json` prints the whole result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from appliance.emotion.policy import is_backchannel
from appliance.tools import SHARED_DATA

__all__ = ["Item", "corpus", "set_metrics", "main", "CONFIDENT", "NEGATIVE_LABELS"]

CONFIDENT = 0.7
NEGATIVE_LABELS = ("sad", "angry", "fearful", "disgust")
SHORT_S = 1.0
ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
_DEFAULT_DATA = SHARED_DATA
_PROMPTS_PER_CALL = 12
_PAUSE_S = 0.8


@dataclass(frozen=True)
class Item:
    """One recording of a set: how to play it to the box and what a sensible box does with it."""

    set: str
    path: Path
    channels: str | None = None  # analyze --channels; None = mono customer / stereo agent,customer
    calm: bool = True  # calm, polite speech: no confident emotion, no alert expected
    speech: bool = True  # False: non-speech, no utterance expected
    parts: tuple[Path, ...] = ()  # files joined into this recording (asterisk prompts)


# Real recordings: which are calm and how their channels map (realcalls/README.md).
_REALCALLS: tuple[tuple[str, str | None], ...] = (
    ("aws/Auto_Repairs_40_UTC_stereo_L-agent_R-caller.wav", "agent,customer"),
    ("aws/lca_demo_agent_only/agent.wav", "customer"),
    ("aws/lca_demo_agent_only/agent1.wav", "customer"),
    ("aws/lca_demo_agent_only/agent2.wav", "customer"),
    ("aws/pca_calls/Auto0_GUID_000_AGENT_ChrisL_Mono.wav", "customer"),
    ("google/commercial_mono.wav", "customer"),
    ("google/two_channel_16k.wav", "agent,customer"),
    ("azure/call_center_sample.wav", "customer"),
    ("azure/katiesteve.wav", "customer"),
    ("azure/whatstheweatherlike.wav", "customer"),
    ("azure/custom_speech_en_general/train_audio1.wav", "customer"),
    ("azure/custom_speech_en_general/train_audio2.wav", "customer"),
    ("azure/custom_speech_en_general/test_audio.wav", "customer"),
)
# Asterisk's non-speech files: beeps, two-tone jingles and silences
_TONES = re.compile(r"^(silence/.*|beep\.wav|beeperr\.wav|(a|de)scending-2tone\.wav)$")


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".wav", ".flac"))


def _asterisk_items(folder: Path) -> list[Item]:
    files = _audio_files(folder)
    tones = [p for p in files if _TONES.match(str(p.relative_to(folder)))]
    prompts = [p for p in files if p not in tones]
    items = [
        Item("asterisk", folder / f"call{k // _PROMPTS_PER_CALL:02d}", "customer", parts=tuple(c))
        for k, c in (
            (k, prompts[k : k + _PROMPTS_PER_CALL])
            for k in range(0, len(prompts), _PROMPTS_PER_CALL)
        )
    ]
    if tones:
        items.append(
            Item("asterisk_tones", folder / "tones", "customer", False, False, tuple(tones))
        )
    return items


def corpus(
    data: Path,
    extra: list[Path] = (),
    asterisk: Path | None = ASTERISK_DIR,
    trained_on: set[str] | frozenset[str] = frozenset(),
) -> list[Item]:
    """The benchmark's recordings (sets whose folder is missing are left out). `trained_on`: paths
    relative to `data` that the model was trained on (its card's neutral anchors): left out, so
    every figure is on recordings the model never heard."""
    items = _all_items(data, extra, asterisk)
    return [it for it in items if _rel(it.path, data) not in trained_on]


def _rel(p: Path, data: Path) -> str:
    try:
        return str(p.relative_to(data))
    except ValueError:
        return str(p)


def _all_items(data: Path, extra: list[Path], asterisk: Path | None) -> list[Item]:
    items: list[Item] = []
    rc = data / "realcalls"
    items += [Item("realcalls", rc / p, ch) for p, ch in _REALCALLS if (rc / p).exists()]
    if (data / "read_speech").is_dir():
        items += [Item("read_speech", p, "customer") for p in _audio_files(data / "read_speech")]
    if (data / "nonspeech").is_dir():
        items += [
            Item("nonspeech", p, "customer", False, False) for p in _audio_files(data / "nonspeech")
        ]
    if asterisk is not None and asterisk.is_dir():
        items += _asterisk_items(asterisk)
    for d in extra:
        items += [Item(f"extra:{d.name}", p) for p in _audio_files(d)]
    return items


# ----------------------------------------------------------------------------- audio in


def _as_wav(item: Item, tmp: Path) -> Path:
    """A PCM WAV the pipeline reads: the file itself, or FLAC / joined prompts written out."""
    if not item.parts and item.path.suffix.lower() == ".wav":
        return item.path
    import soundfile as sf  # a dev dependency: only the FLAC and joined sets need it

    if item.parts:
        chunks, sr = [], None
        for p in item.parts:
            x, sr_p = sf.read(str(p), dtype="float32", always_2d=True)
            if sr is not None and sr_p != sr:
                continue  # one rate per joined call
            sr = sr_p
            chunks += [x[:, 0], np.zeros(int(_PAUSE_S * sr_p), np.float32)]
        y = np.concatenate(chunks)
    else:
        y, sr = sf.read(str(item.path), dtype="float32")
    name = hashlib.sha1(str(item.path).encode()).hexdigest()[:12] + ".wav"
    out = tmp / name
    sf.write(str(out), y, sr, subtype="PCM_16")
    return out


class CachedTranscriber:
    """Wraps the box's recogniser; remembers text by the utterance's audio digest, so reruns of the
    benchmark after an emotion-only change do not decode the same audio again."""

    def __init__(self, inner: Any, path: Path | None):
        self.inner, self.path = inner, path
        self.cache: dict[str, list] = {}
        if path is not None and path.exists():
            self.cache = json.loads(path.read_text())

    def transcribe(self, audio: np.ndarray, sample_rate: int):
        from appliance.types import Transcript, Word

        key = hashlib.sha1(np.asarray(audio, np.float32).tobytes()).hexdigest() + f"@{sample_rate}"
        hit = self.cache.get(key)
        if hit is not None:
            return Transcript(hit[0], tuple(Word(*w) for w in hit[1]), hit[2])
        t = self.inner.transcribe(audio, sample_rate)
        words = [[w.text, w.start, w.end, w.confidence] for w in t.words]
        self.cache[key] = [t.text, words, t.engine]
        return t

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.cache))


# ----------------------------------------------------------------------------- running


@dataclass
class Run:
    """One recording through the box: its customer utterances and alerts."""

    item: Item
    duration: float
    utterances: list[dict] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)


def analyse(item: Item, cfg: Any, engines: Any, tmp: Path) -> Run:
    from appliance.capture.wav import read_wav
    from appliance.ops.analysis import analyze_file
    from appliance.scoring.sentiment import text_sentiment

    wav = _as_wav(item, tmp)
    rec = read_wav(wav)
    res = analyze_file(wav, cfg, engines, channels=item.channels)
    utts = []
    for u in res["utterances"]:
        if u["speaker"] != "customer":
            continue
        utts.append({**u, "text_sentiment": text_sentiment(u["text"]) if u["text"] else None})
    return Run(item, float(rec.duration), utts, res["alerts"])


def _confident(e: dict | None) -> bool:
    return bool(e) and not e["uncertain"] and e["confidence"] >= CONFIDENT


def _share(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def _valence_agreement(utts: list[dict]) -> dict:
    pairs = [
        (u["emotion"]["valence"], u["text_sentiment"])
        for u in utts
        if u["emotion"] and u["text_sentiment"] is not None and abs(u["text_sentiment"]) > 0.05
    ]
    if not pairs:
        return {"n": 0, "sign_agreement": None, "pearson_r": None}
    v, s = (np.array(x, dtype=float) for x in zip(*pairs, strict=True))
    r = float(np.corrcoef(v, s)[0, 1]) if len(v) > 2 and v.std() > 0 and s.std() > 0 else None
    return {
        "n": len(pairs),
        "sign_agreement": round(float(np.mean(np.sign(v) == np.sign(s))), 4),
        "pearson_r": None if r is None else round(r, 4),
    }


def set_metrics(runs: list[Run]) -> dict:
    """The benchmark's figures for one set of recordings (customer utterances only)."""
    utts = [u for r in runs for u in r.utterances]
    emo = [u for u in utts if u["emotion"]]
    labels = [u["emotion"]["label"] for u in emo]
    hours = sum(r.duration for r in runs) / 3600.0
    calm_runs = [r for r in runs if r.item.calm and r.item.speech]
    calm_hours = sum(r.duration for r in calm_runs) / 3600.0
    serious = [
        {"file": r.item.path.name, **a}
        for r in calm_runs
        for a in r.alerts
        if a["severity"] in ("warning", "critical")
    ]
    short = [u for u in utts if u["end"] - u["start"] < SHORT_S]
    back = [u for u in utts if is_backchannel(u["text"])]
    sure = [u for u in emo if not u["emotion"]["uncertain"]]
    return {
        "files": len(runs),
        "audio_s": round(hours * 3600, 1),
        "customer_utterances": len(utts),
        "with_emotion": len(emo),
        "label_distribution": {
            k: _share(labels.count(k), len(labels)) for k in sorted(set(labels))
        },
        "uncertain": _share(len(emo) - len(sure), len(emo)),
        "confident_non_neutral": _share(
            sum(_confident(u["emotion"]) and u["emotion"]["label"] != "neutral" for u in utts),
            len(utts),
        ),
        "negative_labels": _share(
            sum(u["emotion"]["label"] in NEGATIVE_LABELS for u in sure), len(emo)
        ),
        "negative_labels_incl_uncertain": _share(
            sum(lab in NEGATIVE_LABELS for lab in labels), len(emo)
        ),
        "short_utterances": len(short),
        "confident_short": _share(sum(_confident(u["emotion"]) for u in short), len(utts)),
        "backchannels": len(back),
        "confident_backchannels": _share(sum(_confident(u["emotion"]) for u in back), len(back)),
        "calm_alerts_per_hour": round(len(serious) / calm_hours, 2) if calm_hours else None,
        # the same without the key-phrase rule (a word such as "cancel" heard: not an emotion call)
        "calm_sentiment_alerts_per_hour": round(
            sum(a.get("signal") != "key_phrase" for a in serious) / calm_hours, 2
        )
        if calm_hours
        else None,
        "calm_alerts": serious,
        "valence_vs_text": _valence_agreement(utts),
        "texts": sorted({u["text"] for u in utts if u["text"]})[:12]
        if not any(r.item.speech for r in runs)
        else None,
    }


def run_benchmark(items: list[Item], cfg: Any, engines: Any, log=print) -> dict:
    """{set: metrics} plus per-file rows, through the live pipeline."""
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-realism-") as tmp:
        for k, it in enumerate(items, 1):
            t0 = time.monotonic()
            r = analyse(it, cfg, engines, Path(tmp))
            runs.append(r)
            log(
                f"[{k}/{len(items)}] {it.set} {it.path.name}: {len(r.utterances)} customer "
                f"utterances, {len(r.alerts)} alerts ({time.monotonic() - t0:.1f} s)"
            )
    sets: dict[str, dict] = {}
    for name in dict.fromkeys(r.item.set for r in runs):
        sets[name] = set_metrics([r for r in runs if r.item.set == name])
    calm = [r for r in runs if r.item.calm and r.item.speech]
    sets["all_calm_speech"] = set_metrics(calm)
    files = [
        {
            "set": r.item.set,
            "file": r.item.path.name,
            "duration_s": round(r.duration, 1),
            "alerts": [f"{a['rule']} ({a['severity']})" for a in r.alerts],
            "utterances": r.utterances,
        }
        for r in runs
    ]
    return {"sets": sets, "files": files}


# ----------------------------------------------------------------------------- report


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def model_summary(engines: Any) -> dict:
    """The emotion model's identity and its RAVDESS CV figures (from its card), reported beside
    every realism figure."""
    card = getattr(engines.emotion, "card", {}) or {}
    s = (card.get("cv") or {}).get("summary") or {}

    def g(c: str, k: str) -> float | None:
        v = (s.get(c) or {}).get(k)
        return None if v is None else round(float(v), 3)

    return {
        "version": (card.get("spec") or {}).get("version"),
        "file": getattr(engines.emotion, "info", {}).get("file"),
        "cv_uar_16k": g("16k", "uar"),
        "cv_uar_phone": g("phone", "uar"),
        "cv_arousal_16k": g("16k", "arousal_uar"),
        "cv_arousal_phone": g("phone", "arousal_uar"),
    }


ROWS = (
    ("customer utterances", "customer_utterances", str),
    ("confident non-neutral / utterance", "confident_non_neutral", _pct),
    ("negative labels / labelled", "negative_labels", _pct),
    ("negative incl. uncertain", "negative_labels_incl_uncertain", _pct),
    ("uncertain / labelled", "uncertain", _pct),
    ("confident < 1 s / utterance", "confident_short", _pct),
    ("backchannels (n)", "backchannels", str),
    ("confident backchannels / backchannel", "confident_backchannels", _pct),
    ("warning+critical alerts / h (calm)", "calm_alerts_per_hour", str),
    ("  of them sentiment alerts / h", "calm_sentiment_alerts_per_hour", str),
)


def markdown_table(result: dict) -> str:
    """The table for models/README.md and the model card: one column per set."""
    sets = result["sets"]
    names = list(sets)
    L = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for title, key, fmt in ROWS:
        L.append(f"| {title} | " + " | ".join(fmt(sets[n][key]) for n in names) + " |")
    va = [sets[n]["valence_vs_text"] for n in names]
    L.append(
        "| valence vs text: sign agreement (n) | "
        + " | ".join(f"{_pct(v['sign_agreement'])} ({v['n']})" for v in va)
        + " |"
    )
    L.append(
        "| label mix | "
        + " | ".join(
            ", ".join(f"{k} {100 * v:.0f}" for k, v in sets[n]["label_distribution"].items()) or "-"
            for n in names
        )
        + " |"
    )
    m = result.get("model") or {}
    L += [
        "",
        f"Model {m.get('version')} ({m.get('file')}); RAVDESS 6-fold CV: 7-class UAR "
        f"{m.get('cv_uar_16k')} (16k) / {m.get('cv_uar_phone')} (phone), arousal "
        f"{m.get('cv_arousal_16k')} / {m.get('cv_arousal_phone')}.",
    ]
    return "\n".join(L) + "\n"


def plot(result: dict, path: Path) -> str | None:
    """Bar chart of the calm-speech figures per set (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed"
    sets = result["sets"]
    names = list(sets)
    keys = ("confident_non_neutral", "negative_labels", "confident_short")
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names)), 4))
    x = np.arange(len(names))
    for i, k in enumerate(keys):
        ax.bar(x + (i - 1) * 0.27, [100 * (sets[n][k] or 0) for n in names], 0.27, label=k)
    ax.axhline(5, color="grey", ls=":", lw=1)
    ax.axhline(20, color="grey", ls="--", lw=1)
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel("% (floors: 5 / 20)")
    ax.legend(fontsize=8)
    ax.set_title(f"realism, model {(result.get('model') or {}).get('version')}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="appliance bench realism", description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print the whole result as JSON")
    ap.add_argument("--data", type=Path, default=_DEFAULT_DATA, help="the shared data folder")
    ap.add_argument("--extra", type=Path, action="append", default=[], help="more recordings")
    ap.add_argument("--asterisk", type=Path, default=ASTERISK_DIR, help="Asterisk prompt folder")
    ap.add_argument("--sets", default="", help="comma-separated sets to run (default: all)")
    ap.add_argument("--config", help="appliance config (default: built-in defaults)")
    ap.add_argument("--stt-cache", type=Path, help="JSON file that keeps recognised text")
    ap.add_argument("--out", type=Path, help="also write the JSON result here")
    ap.add_argument("--plot", type=Path, help="write a PNG bar chart here")
    a = ap.parse_args(argv)
    from appliance.config import AppConfig, load_config
    from appliance.ops.engines import load_engines

    cfg = load_config(a.config) if a.config else AppConfig()
    engines = load_engines(cfg)
    card = getattr(engines.emotion, "card", {}) or {}
    trained = set((card.get("training", {}).get("anchors") or {}).get("recordings") or [])
    items = corpus(a.data, a.extra, a.asterisk, trained)
    if a.sets:
        want = set(a.sets.split(","))
        items = [it for it in items if it.set in want]
    if not items:
        print("error: no recordings found (see --data, --asterisk, --extra)", file=sys.stderr)
        return 2
    cached = CachedTranscriber(engines.transcriber, a.stt_cache) if engines.transcriber else None
    if cached is not None:
        engines.transcriber = cached
    try:
        result = run_benchmark(items, cfg, engines, log=lambda m: print(m, file=sys.stderr))
    finally:
        if cached is not None:
            cached.save()
    result["model"] = model_summary(engines)
    result["left_out_trained_on"] = sorted(trained)
    if a.plot:
        note = plot(result, a.plot)
        if note:
            print(f"plot skipped: {note}", file=sys.stderr)
    if a.out:
        a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result) if a.json else markdown_table(result), end="" if not a.json else "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
