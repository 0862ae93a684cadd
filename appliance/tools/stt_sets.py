"""The real speech sets `appliance bench stt` measures on (their scoring: `appliance.tools.wer`).

Every set is speech no one on this team recorded, with a human transcript ("gold"), except the
vendor-ASR references of two conversations ("silver": reported apart, never pooled with gold):

- `asterisk`: the Asterisk IVR prompts (Debian `asterisk-core-sounds-en-wav`, a professional
  voice recorded at 8 kHz for telephones) with the transcripts of `asterisk-core-sounds-en`
  (`core-sounds-en.txt.gz`); prompts that are tones, silence or single letters are left out.
- `read_speech/*` (`../shared/data/read_speech`, see its PROVENANCE.md): LibriSpeech test-clean,
  LibriVox, Harvard sentences at 8 kHz, CMU AN4 commands.
- `custom_speech`: three files of read prose with a human transcript
  (`../shared/data/realcalls/azure/custom_speech_en_general`).
- `librivox`: the five LibriVox clips of `../shared/data/speech/librivox` (the old bench set).
- silver: `google_commercial` (a phone order, 8 kHz, both parties on one channel) and
  `azure_katiesteve` (a conversation, 16 kHz).
"""

from __future__ import annotations

import gzip
import json
import re
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.tools import SHARED_DATA
from appliance.tools.wer import normalise_text, wer, word_errors

__all__ = [
    "Clip",
    "SETS",
    "load_set",
    "normalise_text",
    "word_errors",
    "wer",
    "read_audio",
    "read_sphinx_transcription",
]

SHARED = SHARED_DATA
ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")


@dataclass(frozen=True)
class Clip:
    """One recording of a set with its reference transcript."""

    set: str
    id: str
    audio: np.ndarray
    """float32 mono in [-1, 1]."""
    sr: int
    ref: str
    silver: bool = False
    """The reference is another recogniser's output (unverified), not a human transcript."""

    @property
    def duration(self) -> float:
        return self.audio.size / self.sr


# --- reading ---------------------------------------------------------------------------------


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 of a 16-bit WAV at any rate (stdlib) or FLAC (soundfile, a dev dependency)."""
    if path.suffix.lower() == ".flac":
        import soundfile as sf

        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        return np.ascontiguousarray(x.mean(axis=1), np.float32), int(sr)
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        sr, ch = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)
    if ch > 1:
        data = data.reshape(-1, ch).mean(axis=1)
    return data / 32768.0, sr


def read_sphinx_transcription(path: Path) -> dict[str, str]:
    """{file-id: reference text} from `<s> words </s> (file-id)` lines."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\(([^)]+)\)\s*$", line)
        if m:
            out[m.group(2).strip()] = " ".join(m.group(1).split())
    return out


def _sphinx(name: str, folder: Path) -> list[Clip]:
    if not (folder / "transcription").is_file():
        return []
    clips = []
    for fid, ref in sorted(read_sphinx_transcription(folder / "transcription").items()):
        if (folder / f"{fid}.wav").is_file():
            clips.append(Clip(name, fid, *read_audio(folder / f"{fid}.wav"), ref))
    return clips


def _tsv(name: str, folder: Path, table: str, header: bool) -> list[Clip]:
    path = folder / table
    if not path.is_file():
        return []
    clips = []
    lines = path.read_text().splitlines()[1 if header else 0 :]
    for line in lines:
        parts = line.split("\t")
        if len(parts) >= 2 and (folder / parts[0]).is_file():
            clips.append(Clip(name, parts[0], *read_audio(folder / parts[0]), parts[1].strip()))
    return clips


def _librispeech(folder: Path) -> list[Clip]:
    clips = []
    for trans in sorted(folder.glob("*.trans.txt")):
        for line in trans.read_text().splitlines():
            fid, _, ref = line.partition(" ")
            if (folder / f"{fid}.flac").is_file():
                clips.append(Clip("librispeech", fid, *read_audio(folder / f"{fid}.flac"), ref))
    return clips


def _harvard(folder: Path) -> list[Clip]:
    path = folder / "test_samples.json"
    if not path.is_file():
        return []
    return [
        Clip("harvard_8k", e["filename"], *read_audio(folder / e["filename"]), e["transcription"])
        for e in json.loads(path.read_text())
        if (folder / e["filename"]).is_file()
    ]


def _silver(name: str, wav: Path, ref: Path) -> list[Clip]:
    if not (wav.is_file() and ref.is_file()):
        return []
    text = " ".join(line for line in ref.read_text().splitlines() if not line.startswith("#"))
    return [Clip(name, wav.name, *read_audio(wav), text, silver=True)]


# Prompts whose transcript is not what is said: tones, silences, spelled letters and phonetic
# alphabet entries (one word each, the voice says them with no context).
_ASTERISK_SKIP = re.compile(r"^(silence/|letters/|phonetic/|beep|beeperr|.*-2tone)")
# Notes inside a transcript are not speech: "<beep ascending>", "(simple tone sound plays)",
# "IAX (note: does not say "2")".
_ASTERISK_NOTE = re.compile(r"<[^>]*>|\([^)]*\)")
# Misspellings in core-sounds-en.txt: the word is the one the voice says, only its spelling is
# wrong, so a recogniser that writes it right would be charged an error.
ASTERISK_SPELLING = {
    "Un-indentified": "Unidentified",
    "witheld": "withheld",
    "represenatives": "representatives",
    "fourtieth": "fortieth",
    "umute": "unmute",
}


def asterisk_reference(text: str) -> str:
    """A core-sounds-en.txt transcript as spoken: notes taken out, misspellings mended."""
    text = _ASTERISK_NOTE.sub(" ", text)
    for wrong, right in ASTERISK_SPELLING.items():
        text = re.sub(rf"\b{re.escape(wrong)}\b", right, text)
    return " ".join(text.split())


def asterisk_clips(folder: Path = ASTERISK_DIR, text: Path = ASTERISK_TEXT) -> list[Clip]:
    """The Asterisk prompts that have a spoken transcript, sorted by name."""
    if not (folder.is_dir() and text.is_file()):
        return []
    clips = []
    with gzip.open(text, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    for line in lines:
        name, sep, ref = line.partition(":")
        name, ref = name.strip(), ref.strip()
        ref = "" if ref.startswith("[") else asterisk_reference(ref)
        if not sep or name.startswith(";") or not ref:
            continue
        if _ASTERISK_SKIP.match(name) or not (folder / f"{name}.wav").is_file():
            continue
        clips.append(Clip("asterisk", name, *read_audio(folder / f"{name}.wav"), ref))
    return sorted(clips, key=lambda c: c.id)


def _sets(shared: Path) -> dict[str, object]:
    rs = shared / "read_speech"
    azure = shared / "realcalls" / "azure"
    return {
        "asterisk": lambda: asterisk_clips(),
        "custom_speech": lambda: [
            Clip("custom_speech", c.id, c.audio, c.sr, c.ref)
            for c in _tsv("custom_speech", azure / "custom_speech_en_general", "trans.tsv", False)
        ],
        "librispeech": lambda: _librispeech(rs / "librispeech_test_clean_fragment"),
        "librivox": lambda: _sphinx("librivox", shared / "speech" / "librivox"),
        "harvard_8k": lambda: _harvard(rs / "harvard_osr_8k"),
        "an4": lambda: _tsv("an4", rs / "an4_cmu", "transcripts.tsv", True),
        "google_commercial": lambda: _silver(
            "google_commercial",
            shared / "realcalls" / "google" / "commercial_mono.wav",
            shared / "realcalls" / "google" / "commercial_mono.silver_ref.txt",
        ),
        "azure_katiesteve": lambda: _silver(
            "azure_katiesteve", azure / "katiesteve.wav", azure / "katiesteve.silver_ref.txt"
        ),
    }


SETS: tuple[str, ...] = tuple(_sets(SHARED))
"""Every set, gold first, silver last."""
SILVER_SETS = frozenset({"google_commercial", "azure_katiesteve"})
TELEPHONE_SETS = frozenset({"asterisk", "harvard_8k", "google_commercial"})
"""Sets recorded at 8 kHz through a telephone channel."""


def load_set(name: str, shared: Path = SHARED) -> list[Clip]:
    """The clips of one set ([] when its data is absent: a fresh clone has no ../shared)."""
    sets = _sets(shared)
    if name not in sets:
        raise ValueError(f"unknown set {name!r}; sets: {', '.join(sets)}")
    return sets[name]()  # type: ignore[operator]
