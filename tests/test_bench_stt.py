"""`appliance bench stt` and `appliance bench vad`: the sets, the normalisation, the calls the
pipeline sees, the floors, and a short real run of each."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SHARED

from appliance.tools import bench_stt, bench_vad
from appliance.tools.stt_sets import (
    ASTERISK_DIR,
    SETS,
    SILVER_SETS,
    Clip,
    asterisk_clips,
    asterisk_reference,
    load_set,
    normalise_text,
    wer,
)

needs_read_speech = pytest.mark.skipif(
    not (SHARED / "read_speech").is_dir(), reason="../shared/data/read_speech not present"
)
needs_asterisk = pytest.mark.skipif(
    not ASTERISK_DIR.is_dir() or not asterisk_clips(), reason="asterisk-core-sounds-en(-wav)"
)


def test_numbers_and_spellings_normalise_alike() -> None:
    assert normalise_text("Press 1, then #") == normalise_text("press one then pound")
    assert normalise_text("twenty-five") == ["25"] == normalise_text("25")
    assert normalise_text("two hundred and six") == ["206"]
    assert normalise_text("one two three") == ["1", "2", "3"]
    assert normalise_text("1,000 people") == ["1000", "people"]
    assert normalise_text("Mr. Smith's neighbour") == ["mister", "smiths", "neighbor"]
    assert wer(["press one for sales"], ["Press 1 for sales."]) == 0.0
    assert wer(["a b c d"], ["a x c"]) == 0.5


def test_a_word_written_another_way_is_not_an_error() -> None:
    assert normalise_text("I'm sorry, that's not it; we can't") == [
        "i", "am", "sorry", "that", "is", "not", "it", "we", "can", "not",
    ]  # fmt: skip
    assert normalise_text("your party's name") == ["your", "partys", "name"]  # a possessive
    assert normalise_text("tenth") == ["10th"] == normalise_text("10th")
    assert normalise_text("twenty-first") == ["21st"] and normalise_text("hundredth") == ["100th"]
    assert normalise_text("a hundred") == ["a", "100"] and normalise_text("thousand") == ["1000"]
    assert normalise_text("two hundred thousand") == ["200000"]
    assert normalise_text("A.M.") == ["am"] and normalise_text("straight thru") == [
        "straight",
        "through",
    ]
    assert wer(["to check voice mail"], ["to check voicemail"]) == 0.0
    assert wer(["press 3 to rerecord"], ["press three to re-record"]) == 0.0
    assert wer(["log in"], ["login"]) == 0.0


def test_a_wrong_word_stays_an_error() -> None:
    assert wer(["for"], ["4"]) == 1.0  # the homophone in the wrong form
    assert wer(["twelfth"], ["12"]) == 1.0  # an ordinal said as a cardinal
    assert wer(["call for reading"], ["call forwarding"]) == pytest.approx(2 / 3)
    # words written apart match only the one word they spell, where the alignment puts them
    assert wer(["in valid"], ["invalid"]) == 0.0
    assert wer(["invalid choice"], ["in valid choice"]) == 0.0
    assert wer(["in a valid choice"], ["invalid choice"]) == 0.75
    assert wer(["the in valid"], ["in valid"]) == pytest.approx(1 / 3)


def test_asterisk_notes_and_misspellings_are_not_speech() -> None:
    assert asterisk_reference('IAX (note: does not say "2")') == "IAX"
    assert asterisk_reference("<beep ascending>") == ""
    assert (
        asterisk_reference("Un-indentified or witheld and therefore cannot be called back.")
        == "Unidentified or withheld and therefore cannot be called back."
    )
    assert asterisk_reference("press the pound key. (simple tone sound plays)") == (
        "press the pound key."
    )


def test_join_calls_keeps_every_clip_and_reference() -> None:
    sr = 8000
    clips = [
        Clip("s", f"c{i}", np.full(sr * 20, 0.1, np.float32), sr, f"word{i}") for i in range(7)
    ]
    calls = bench_stt.join_calls(clips, in_order=True)
    assert len(calls) == 3  # at most 60 s of speech a call
    assert " ".join(r for _a, _s, r in calls) == " ".join(c.ref for c in clips)
    shuffled = " ".join(r for _a, _s, r in bench_stt.join_calls(clips))
    assert shuffled != " ".join(c.ref for c in clips)  # a call is not the set sorted by name
    assert sorted(shuffled.split()) == sorted(c.ref for c in clips)
    assert shuffled == " ".join(r for _a, _s, r in bench_stt.join_calls(clips))  # seeded
    total = sum(a.size for a, _s, _r in calls)
    assert total == 7 * sr * 20 + (7 + 3) * sr  # one second of line noise around each clip
    gap = calls[0][0][:sr]
    assert 0 < np.abs(gap).max() < 1e-2  # noise, not digital silence


def test_floors_are_checked_per_model() -> None:
    rows = [
        {
            "model": "tiny.en",
            "set": "asterisk",
            "silver": False,
            "wer_whole": 0.04,
            "wer_analyze": 0.06,
        },
        {
            "model": "base",
            "set": "asterisk",
            "silver": False,
            "wer_whole": 0.04,
            "wer_analyze": 0.045,
        },
        {
            "model": "base",
            "set": "custom_speech",
            "silver": False,
            "wer_whole": 0.05,
            "wer_analyze": 0.05,
        },
    ]
    held = dict(bench_stt.floors(rows))
    assert held["tiny.en asterisk: analyze WER 0.060 <= 0.05"] is False
    assert held["tiny.en asterisk: pipeline loss +2.0 points <= 1"] is False
    assert held["base asterisk: analyze WER 0.045 <= 0.05"] is True
    assert held["base custom_speech: pipeline loss +0.0 points <= 1"] is True


@needs_read_speech
def test_sets_load_with_word_counts() -> None:
    counts = {}
    for name in SETS:
        clips = load_set(name)
        counts[name] = sum(len(normalise_text(c.ref)) for c in clips)
        assert all(c.silver == (name in SILVER_SETS) for c in clips)
    assert counts["custom_speech"] >= 280 and counts["librivox"] == 71
    assert counts["librispeech"] >= 50 and counts["harvard_8k"] >= 70 and counts["an4"] >= 40
    assert load_set("librivox", SHARED / "missing") == []
    with pytest.raises(ValueError, match="unknown set"):
        load_set("nope")


@needs_asterisk
def test_asterisk_prompts_are_the_telephone_set() -> None:
    clips = asterisk_clips()
    assert len(clips) > 400 and all(c.sr == 8000 for c in clips)
    assert sum(len(normalise_text(c.ref)) for c in clips) > 3000
    assert not any(c.id.startswith(("letters/", "silence/", "phonetic/")) for c in clips)


@needs_read_speech
@pytest.mark.slow
def test_bench_stt_real_run(capsys: pytest.CaptureFixture[str]) -> None:
    """A short real run of both decodes on the LibriVox clips: through the pipeline it loses at
    most one point against decoding each clip whole (measured 7.0 % both, 71 words)."""
    assert bench_stt.main(["--set", "librivox", "--mode", "both", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (row,) = doc["rows"]
    assert row["words"] == 71 and 0 < row["rtf"] < 1 and row["redaction_tags"] == 0
    assert row["wer_whole"] <= 0.10 and row["wer_analyze"] <= 0.10
    assert row["wer_analyze"] - row["wer_whole"] <= bench_stt.MAX_PIPELINE_LOSS + 1e-9
    assert all(f["held"] for f in doc["floors"])
    assert bench_stt.main(["--data", str(SHARED / "missing")]) == 2


@pytest.mark.skipif(not (SHARED / "realcalls").is_dir(), reason="../shared/data/realcalls")
@pytest.mark.slow
def test_bench_vad_counts_clipped_speech() -> None:
    from appliance.tools.stt_sets import read_audio

    x, sr = read_audio(SHARED / "realcalls/aws/Auto_Repairs_40_UTC_caller.wav")
    x = x[: sr * 60]
    rows = bench_vad.sweep([("caller", x, sr)], [0.0, 0.3], [0.1, 0.7], threshold=0.3)
    by = {(r["preroll"], r["hangover"]): r for r in rows}
    assert all(r["speech_s"] > 5 for r in rows)
    # the shortest pre-roll and hangover clip the most; longer ones make fewer utterances
    short, long_ = by[(0.0, 0.1)], by[(0.3, 0.7)]
    clip = lambda r: r["clipped_onset_pct"] + r["clipped_ending_pct"]  # noqa: E731
    assert clip(short) >= clip(long_)
    assert long_["utterances"] <= short["utterances"]
