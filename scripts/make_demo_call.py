"""Build the bundled demo call: espeak-ng agent lines and RAVDESS customer clips, stereo 16 kHz.

The customer starts pleased and ends angry, so the demo shows a falling sentiment trajectory and a
live intervention alert. Needs ../shared/data/ravdess, soundfile and espeak-ng; run from the repo root:
    .venv/bin/python scripts/make_demo_call.py
Output: appliance/data/demo_call.wav (+ demo_calls.json). Licence: appliance/data/DEMO_LICENSE.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
RAVDESS = ROOT.parent / "shared" / "data" / "ravdess"
SR = 16000
ACTOR = 3
# (agent line, RAVDESS emotion code, intensity code, repetition, customer starts this many s before the agent ends)
SCRIPT = [
    (
        "Thank you for calling Northwind support, my name is Sam. How can I help you today?",
        "03",
        "02",
        "01",
        0.0,
    ),
    ("Great, I can see your order here. Let me check it for you.", "03", "01", "01", 0.0),
    ("I see the delivery was scheduled for Monday.", "08", "01", "01", 0.0),
    ("Unfortunately there is a delay at our warehouse.", "01", "01", "01", 0.0),
    ("The new delivery date would be in about two weeks.", "04", "01", "01", 0.0),
    ("I understand, but there is nothing I can do about the shipping date.", "07", "01", "01", 0.0),
    ("Our policy does not allow a refund at this stage.", "05", "01", "01", 0.6),
    ("Please calm down, I am only following the process.", "05", "02", "01", 0.9),
    ("Let me see if my supervisor can help.", "05", "02", "02", 0.0),
]


def trim(x: np.ndarray, sr: int) -> np.ndarray:
    hop = sr // 100
    n = len(x) // hop
    e = 10 * np.log10(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    active = np.nonzero(e > e.max() - 35)[0]
    a, b = max(active[0] - 10, 0), min(active[-1] + 10, n)
    return x[a * hop : b * hop]


def speak(text: str, tmp: Path) -> np.ndarray:
    wav = tmp / "agent.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(wav), text], check=True)
    x, sr = sf.read(wav, dtype="float32")
    if sr != SR:
        import librosa

        x = librosa.resample(x, orig_sr=sr, target_sr=SR)
    return trim(x * 0.7, SR)


def clip(emotion: str, intensity: str, rep: str) -> np.ndarray:
    name = f"03-01-{emotion}-{intensity}-01-{rep}-{ACTOR:02d}.flac"
    x, sr = sf.read(RAVDESS / f"Actor_{ACTOR:02d}" / name, dtype="float32")
    assert sr == SR
    return trim(x, SR), name


def main() -> int:
    if not RAVDESS.exists():
        print(f"{RAVDESS} not found", file=sys.stderr)
        return 1
    rng = np.random.default_rng(7)
    agent, cust, used = [], [], []
    t = 0.5
    segments = []
    with tempfile.TemporaryDirectory() as d:
        for line, emo, inten, rep, early in SCRIPT:
            a = speak(line, Path(d))
            segments.append(("agent", t, a))
            t_end = t + len(a) / SR
            c, name = clip(emo, inten, rep)
            used.append(name)
            start = t_end - early + (0.5 if early == 0 else 0.0)
            segments.append(("customer", start, c))
            t = start + len(c) / SR + 0.6
    total = int((t + 0.5) * SR)
    agent = np.zeros(total, np.float32)
    cust = np.zeros(total, np.float32)
    for who, start, x in segments:
        i = int(start * SR)
        (agent if who == "agent" else cust)[i : i + len(x)] += x
    # line noise, so the VAD and the models see a realistic floor rather than digital silence
    agent += rng.normal(0, 10 ** (-62 / 20), total).astype(np.float32)
    cust += rng.normal(0, 10 ** (-58 / 20), total).astype(np.float32)
    out = ROOT / "appliance" / "data" / "demo_call.wav"
    sf.write(out, np.stack([agent, cust], 1), SR, subtype="PCM_16")
    spec = {
        "calls": [
            {
                "file": "demo_call.wav",
                "channels": ["agent", "customer"],
                "position": "pos-1",
                "customer": "CRM-000123",
                "call_type": "support",
                "segment": "retail",
                "customer_clips": used,
                "duration_s": round(total / SR, 1),
            }
        ]
    }
    (ROOT / "appliance" / "data" / "demo_calls.json").write_text(json.dumps(spec, indent=2) + "\n")
    print(f"wrote {out} ({total / SR:.1f} s), clips: {used}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
