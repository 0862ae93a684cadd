"""Realism benchmark: the corpus it finds and the figures it computes (the full run is
`appliance bench realism`; it needs ../shared and minutes of CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.tools import bench_realism as B

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _u(start, dur, text, label="neutral", conf=0.9, uncertain=False, valence=0.0, ts=None):
    emo = {
        "label": label,
        "confidence": conf,
        "uncertain": uncertain,
        "valence": valence,
        "arousal": 0.0,
        "intensity": 0.5,
    }
    return {
        "speaker": "customer",
        "start": start,
        "end": start + dur,
        "text": text,
        "emotion": emo if label else None,
        "text_sentiment": ts,
    }


def test_set_metrics_counts_what_the_issue_asks_for():
    item = B.Item("calls", Path("a.wav"))
    utts = [
        _u(0, 3.0, "My service light is on again", "sad", 0.9, valence=-0.6, ts=0.0),
        _u(4, 0.7, "Bye.", "fearful", 0.98, valence=-0.6),  # short, backchannel, confident
        _u(6, 2.0, "Thank you.", "happy", 0.8, uncertain=True, valence=0.6, ts=0.36),
        _u(9, 4.0, "That is great news, thanks", "neutral", 0.95, valence=0.1, ts=0.8),
        _u(14, 0.5, None, None),  # too short for an emotion
    ]
    alerts = [
        {"rule": "customer_upset", "severity": "critical", "signal": "sentiment", "at": 5.0},
        {"rule": "escalation_phrase", "severity": "warning", "signal": "key_phrase", "at": 9.0},
        {"rule": "overtalk", "severity": "info", "signal": "overtalk_s", "at": 9.0},
    ]
    m = B.set_metrics([B.Run(item, 360.0, utts, alerts)])
    assert m["customer_utterances"] == 5 and m["with_emotion"] == 4
    assert m["confident_non_neutral"] == pytest.approx(2 / 5)  # sad 0.9 and fearful 0.98
    assert m["negative_labels"] == pytest.approx(2 / 4)
    assert m["confident_short"] == pytest.approx(1 / 5)
    assert m["backchannels"] == 2 and m["confident_backchannels"] == pytest.approx(1 / 2)
    assert m["calm_alerts_per_hour"] == pytest.approx(20.0)  # two alerts in 6 minutes
    assert m["calm_sentiment_alerts_per_hour"] == pytest.approx(10.0)
    va = m["valence_vs_text"]
    assert va["n"] == 2 and va["sign_agreement"] == 1.0
    assert m["label_distribution"]["sad"] == pytest.approx(0.25)


def test_non_speech_sets_report_their_text_and_no_alert_rate():
    item = B.Item("nonspeech", Path("hold.wav"), "customer", calm=False, speech=False)
    m = B.set_metrics([B.Run(item, 87.0, [_u(1, 2.0, "Thank you.", "sad", 0.9)], [])])
    assert m["texts"] == ["Thank you."] and m["calm_alerts_per_hour"] is None


def test_markdown_table_has_a_column_per_set():
    item = B.Item("calls", Path("a.wav"))
    res = {"sets": {"calls": B.set_metrics([B.Run(item, 60.0, [_u(0, 2, "Okay.")], [])])}}
    res["model"] = {"version": "x", "cv_uar_16k": 0.7}
    table = B.markdown_table(res)
    assert "| metric | calls |" in table and "0.7" in table


@pytest.mark.shared
@pytest.mark.skipif(not (SHARED / "realcalls").exists(), reason="../shared data absent")
def test_corpus_finds_the_shared_sets_and_leaves_out_trained_recordings(tmp_path):
    items = B.corpus(SHARED, asterisk=None)
    sets = {it.set for it in items}
    assert {"realcalls", "read_speech", "nonspeech"} <= sets
    call40 = [it for it in items if it.path.name.startswith("Auto_Repairs_40")]
    assert call40 and call40[0].channels == "agent,customer"
    assert all(not it.speech for it in items if it.set == "nonspeech")
    held = B.corpus(
        SHARED, asterisk=None, trained_on={"realcalls/aws/lca_demo_agent_only/agent.wav"}
    )
    assert len(held) == len(items) - 1


def test_benches_default_to_the_shared_folder_beside_the_project() -> None:
    """The restructure moved the benches one folder deeper; their default data folder must still
    be ../shared/data beside the project root, not a folder inside it."""
    from appliance.tools import SHARED_DATA, bench_features, stt_sets

    assert SHARED.resolve() == SHARED_DATA
    assert {B._DEFAULT_DATA, bench_features.SHARED, stt_sets.SHARED} == {SHARED_DATA}
