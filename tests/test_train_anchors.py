"""Neutral anchors for training (models/emotion_training/anchors.py): which recordings, held-out
split, and the manifest the recipe trains on."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("scipy")  # the training package imports its channel simulation
from emotion_training import anchors as A  # noqa: E402  (models/ is on pytest's pythonpath)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def test_long_utterances_are_split_into_turn_sized_pieces():
    sr = 8000
    assert len(A.split_long(np.zeros(5 * sr), sr)) == 1
    pieces = A.split_long(np.zeros(12 * sr), sr)
    assert len(pieces) == 3 and sum(len(p) for p in pieces) == 12 * sr


def test_an4_speakers_split_in_two_halves():
    names = [f"an{i}-{spk}-b.wav" for i, spk in enumerate(["mblw", "fash", "mcen", "fwxs", "mtos"])]
    flags = [A.an4_is_anchor(Path(n)) for n in names]
    assert any(flags) and not all(flags)
    # by speaker, not by file: every file of a speaker falls on the same side
    assert A.an4_is_anchor(Path("an1-mblw-b.wav")) == A.an4_is_anchor(Path("an99-mblw-b.wav"))


def test_benchmark_recordings_are_never_anchors():
    held_out = {
        "realcalls/aws/Auto_Repairs_40_UTC_stereo_L-agent_R-caller.wav",
        "realcalls/aws/Auto_Repairs_40_UTC_caller.wav",
        "realcalls/aws/lca_demo_agent_only/agent2.wav",
        "realcalls/azure/custom_speech_en_general/test_audio.wav",
        "nonspeech/hold_music_8k.wav",
    }
    assert not held_out & {p for p, _ in A.ANCHOR_FILES}
    assert not any(
        "librispeech" in p or "librivox" in p or "harvard" in p for p, _ in A.ANCHOR_FILES
    )


@pytest.mark.shared
@pytest.mark.skipif(not (SHARED / "realcalls").exists(), reason="../shared data absent")
def test_build_writes_neutral_calls_from_the_box_segmenter(tmp_path):
    files = A.anchor_files(SHARED)
    an4 = [p for p, _ in files if p.startswith(A.AN4)]
    assert 0 < len(an4) < len(list((SHARED / A.AN4).glob("*.wav")))
    manifest = A.build(SHARED, tmp_path)
    rows = list(csv.DictReader(manifest.open()))
    assert len(rows) > 60
    assert {r["emotion"] for r in rows} == {"neutral"}
    assert all((tmp_path / r["path"]).exists() for r in rows)
    assert {r["source"] for r in rows} <= {p for p, _ in files}
    # one call per recording, so the causal normalisation sees a recording in order
    calls = {r["call"] for r in rows}
    assert len(calls) <= len(files)
