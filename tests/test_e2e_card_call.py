"""Issue 16 end to end: a payment call built with espeak-ng goes through `appliance analyze
--channels agent,customer --db X --json`, and no text cell of any table, nor the printed JSON,
gives away the card number, expiry, security code, date of birth or social security number.

The call: agent on the left, customer on the right, a customer who reads the card number "in
groups of four" with 1.5 s of silence between the groups (the VAD closes an utterance after
0.5 s), so every group is its own utterance, as in the issue. The customer voice (espeak-ng
en-us+m3, 140 wpm, a comma between digits) is the one Whisper tiny.en transcribes digit by
digit ("4 5 3 9"); `test_groups_are_separate_readable_utterances` checks that the audio really
is cut and transcribed that way, so the leak test cannot pass for the wrong reason.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, needs_model
from leakcheck import digit_runs, leaks

from appliance.config import RedactionConfig
from appliance.stt.call_redaction import CallRedaction
from appliance.types import Transcript

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("espeak-ng") is None or shutil.which("sox") is None,
        reason="espeak-ng and sox are needed to build the call",
    ),
]

SR = 16000
AGENT_VOICE = ("en-us", "165")
CUSTOMER_VOICE = ("en-us+m3", "140")
GROUP_GAP = 1.5

CARD = "4539148803436467"
SSN = "531427791"
# (speaker, text, silence before it in seconds)
SCRIPT: list[tuple[str, str, float]] = [
    ("agent", "Thank you for calling Northwind billing. How can I help you today?", 0.5),
    ("customer", "Hi, I would like to pay my bill please.", 0.8),
    ("agent", "Sure. Can I have the card number please, in groups of four?", 0.8),
    ("customer", "four, five, three, nine", 1.0),
    ("customer", "one, four, eight, eight", GROUP_GAP),
    ("customer", "zero, three, four, three", GROUP_GAP),
    ("customer", "six, four, six, seven", GROUP_GAP),
    ("agent", "Thank you. And the expiry date?", 1.0),
    ("customer", "oh eight, twenty nine", 0.8),
    ("agent", "And the three digits on the back, please.", 0.8),
    ("customer", "seven, three, seven", 0.8),
    ("agent", "Thank you. Can you also confirm your date of birth?", 0.8),
    ("customer", "the twelfth of March, nineteen eighty five", 0.8),
    ("agent", "And your social security number?", 0.8),
    ("customer", "five, three, one", 0.8),
    ("customer", "four, two", GROUP_GAP),
    ("customer", "seven, seven, nine, one", GROUP_GAP),
    ("agent", "Thank you. Your payment is done. Anything else?", 1.0),
    ("customer", "No, that is all, thank you very much.", 0.8),
]
DIGIT_GROUPS = [3, 4, 5, 6]  # SCRIPT lines of the card number, one utterance each


def _sox(*args: str) -> None:
    # -R: repeatable noise and dither, so Whisper hears the same call on every run
    subprocess.run(["sox", "-R", *args], check=True, capture_output=True)


def _seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def build_call(tmp: Path) -> tuple[Path, list[tuple[str, float, float]]]:
    """Stereo 16 kHz WAV of SCRIPT and the (speaker, start, end) of every line."""
    tmp.mkdir(parents=True, exist_ok=True)
    timeline: list[tuple[str, float, float, Path]] = []
    t = 0.0
    for i, (speaker, text, gap) in enumerate(SCRIPT):
        voice, rate = AGENT_VOICE if speaker == "agent" else CUSTOMER_VOICE
        raw, line = tmp / f"raw{i}.wav", tmp / f"line{i}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", rate, "-w", str(raw), text], check=True)
        # 16 kHz mono, espeak's own leading/trailing silence cut so the gaps are what we say
        _sox(str(raw), "-r", str(SR), "-c", "1", "-b", "16", str(line), "silence", "1", "0.02",
             "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse", "gain", "-3")  # fmt: skip
        start = t + gap
        t = start + _seconds(line)
        timeline.append((speaker, start, t, line))
    total = t + 1.0
    channels = []
    for speaker in ("agent", "customer"):
        parts, pos = [], 0.0
        for k, (who, start, end, line) in enumerate(timeline):
            if who != speaker:
                continue
            sil = tmp / f"sil-{speaker}-{k}.wav"
            _sox(
                "-n",
                "-r",
                str(SR),
                "-c",
                "1",
                "-b",
                "16",
                str(sil),
                "trim",
                "0",
                f"{start - pos:.3f}",
            )
            parts += [str(sil), str(line)]
            pos = end
        tail = tmp / f"tail-{speaker}.wav"
        _sox(
            "-n", "-r", str(SR), "-c", "1", "-b", "16", str(tail), "trim", "0", f"{total - pos:.3f}"
        )
        clean, noisy = tmp / f"{speaker}-clean.wav", tmp / f"{speaker}.wav"
        _sox(*parts, str(tail), str(clean))
        # a line-noise floor, as on a real line (the VAD tracks it)
        noise = tmp / f"noise-{speaker}.wav"
        _sox("-n", "-r", str(SR), "-c", "1", "-b", "16", str(noise), "synth", f"{total:.3f}",
             "whitenoise", "vol", "0.002")  # fmt: skip
        _sox("-m", "-v", "1", str(clean), "-v", "1", str(noise), str(noisy))
        channels.append(str(noisy))
    out = tmp / "payment_call.wav"
    _sox("-M", *channels, str(out))
    return out, [(s, a, b) for s, a, b, _ in timeline]


@pytest.fixture(scope="module")
def call(tmp_path_factory) -> tuple[Path, list[tuple[str, float, float]]]:
    return build_call(tmp_path_factory.mktemp("card-call"))


def _segments(wav: Path) -> list[tuple[str, object]]:
    """Every utterance the live VAD cuts, in the order it closes them (= utterance index)."""
    from appliance.capture.wav import read_wav
    from appliance.segment.vad import Segmenter

    rec = read_wav(wav)
    out = []
    for ch, speaker in enumerate(("agent", "customer")):
        x, seg = rec.channels[ch], Segmenter(rec.sample_rate)
        segs = []
        for i in range(0, len(x), rec.sample_rate // 10):
            segs += seg.push(x[i : i + rec.sample_rate // 10])
        out += [(speaker, s) for s in segs + seg.flush()]
    return sorted(out, key=lambda p: (p[1].end, p[0]))


@pytest.fixture(scope="module")
def heard(call) -> list[tuple[str, float, float, Transcript]]:
    """(speaker, start, end, transcript) of every utterance, transcribed and redacted one by one
    exactly as the STT stage does."""
    from appliance.stt.whisper import WhisperTranscriber

    wav, _timeline = call
    whisper = WhisperTranscriber(threads=1)
    return [
        (speaker, seg.start, seg.end, whisper.transcribe(seg.audio, SR))
        for speaker, seg in _segments(wav)
    ]


def test_groups_are_separate_readable_utterances(call, heard) -> None:
    """The fixture is realistic: one utterance per group, and each one, redacted on its own,
    still reads as its digits (what the issue found in `transcripts`)."""
    _wav, timeline = call
    customer = [h for h in heard if h[0] == "customer"]
    assert len(customer) == sum(1 for s, _, _ in timeline if s == "customer"), customer
    assert len(heard) == len(timeline)
    readable = 0
    for k, i in enumerate(DIGIT_GROUPS):
        _who, start, end = timeline[i]
        text = next(tr.text for sp, a, b, tr in heard if sp == "customer" and a <= start <= b)
        readable += any(CARD[4 * k : 4 * k + 4] in r for r in digit_runs(text))
    assert readable >= 3, "Whisper no longer reads the groups as digits: re-tune the voices"


@pytest.mark.parametrize("auto_pause", [True, False], ids=["paused", "redacted"])
def test_call_context_redacts_this_call(heard, auto_pause: bool) -> None:
    """What the writer will store once it feeds the call context: nothing of the card data,
    and the rest of the call readable."""
    ctx = CallRedaction(RedactionConfig(auto_pause=auto_pause))
    stored = []
    for index, (speaker, start, end, tr) in enumerate(heard):
        stored += ctx.add(index, speaker, start, end, tr)  # type: ignore[arg-type]
    stored += ctx.close()
    assert [r.index for r in stored] == list(range(len(heard)))
    problems = []
    for r in stored:
        for text in (r.transcript.text, " ".join(w.text for w in r.transcript.words)):
            if found := _leaks_in(text):
                problems.append((r.index, r.speaker, text, found))
    assert not problems, problems
    first, last = stored[1].transcript.text.lower(), stored[-1].transcript.text.lower()
    assert "pay my bill" in first and "thank you" in last


def _strings(value, out: list[str]) -> list[str]:
    """Every string in a JSON value; numbers are scores and times, not text."""
    if isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)
        words = [v["w"] for v in value if isinstance(v, dict) and isinstance(v.get("w"), str)]
        if words:
            out.append(" ".join(words))  # a word list read as one text
    elif isinstance(value, str):
        out.append(value)
    return out


def _cell_texts(cell: str) -> list[str]:
    try:
        return _strings(json.loads(cell), [])
    except (ValueError, TypeError):
        return [cell]


_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)?")


def _leaks_in(text: str) -> list[str]:
    text = _TIMESTAMP.sub(" ", text)  # the store's own timestamps (migrations table)
    found = leaks(text, CARD) + leaks(text, SSN, n=4)
    runs = digit_runs(text)
    for secret in ("737", "829", "1985", "531", "7791"):
        found += [f"{secret} in {r}" for r in runs if secret in r]
    low = text.lower()
    found += [w for w in ("twelfth", "12th", "march") if w in low]
    return found


@needs_model
def test_analyze_stores_no_card_data(call, tmp_path) -> None:
    wav, _timeline = call
    db = tmp_path / "call.db"
    r = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "analyze", str(wav), "--channels",
         "agent,customer", "--db", str(db), "--json"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    problems = [(f"json: {t!r}", x) for t in _strings(doc, []) if (x := _leaks_in(t))]
    con = sqlite3.connect(db)
    try:
        tables = [
            row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        n_text = 0
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):
                for cell in row:
                    if isinstance(cell, bytes):
                        cell = cell.decode("utf-8", "replace")
                    if not isinstance(cell, str):
                        continue
                    for text in _cell_texts(cell):
                        n_text += 1
                        if found := _leaks_in(text):
                            problems.append((f"{table}: {text!r}", found))
        stored = con.execute("SELECT COUNT(*) FROM transcripts WHERE text != ''").fetchone()[0]
        withheld = con.execute("SELECT COUNT(*) FROM transcripts WHERE withheld = 1").fetchone()[0]
    finally:
        con.close()
    assert not problems, "\n".join(f"{where}: {what}" for where, what in problems)
    # the call itself was transcribed: the check above looked at real text
    assert stored >= 5 and n_text > 0
    # the agent's request for the card paused transcription until the answer closed
    assert withheld >= 4
    assert np.isfinite(doc["call"]["duration"])
