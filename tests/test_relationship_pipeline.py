"""Relationship health through the real pipeline and store over generated call histories."""

import json

import numpy as np
import pytest
from conftest import ROOT
from support.fakes import FakeEmotion, engines, result

from appliance.capture.wav import read_wav
from appliance.config import config_from_dict
from appliance.ops.analysis import Session
from appliance.pipeline.call import CallMeta

DEMO = ROOT / "appliance" / "data" / "demo_call.wav"


class Mood:
    """What the scripted customer sounds like on the next call (the relationship logic is under
    test, not the model)."""

    valence = 0.0
    arousal = 0.3

    def __call__(self, audio, sr, n):
        v = self.valence
        label = "happy" if v > 0.2 else "angry" if v < -0.2 else "neutral"
        return result(label, 0.9, 0.5, self.arousal, v)


def run_history(tmp_path, valences, arousal=0.3):
    rec = read_wav(DEMO)
    model = Mood()
    cfg = config_from_dict({"box": {"id": "rel-box"}})
    session = Session(cfg, tmp_path / "rel.db", engines(FakeEmotion(model)))
    states = []
    try:
        for v in valences:
            model.valence, model.arousal = v, arousal
            session.replay(
                rec,
                ["agent", "customer"],
                CallMeta(customer_ref="CRM-42", segment="retail", call_type="sales"),
            )
            row = session.store.db["relationships"].get("CRM-42")
            states.append(row["state"])
        alerts = [
            dict(r)
            for r in session.store.db.query(
                "SELECT rule, reason, evidence FROM alerts WHERE signal IN ('relationship_risk', 'advocacy')"
            )
        ]
        outbox = [
            json.loads(r["payload"])
            for r in session.store.db.query(
                "SELECT payload FROM outbox WHERE kind = 'relationship'"
            )
        ]
    finally:
        session.close()
    return states, alerts, outbox


@pytest.mark.slow
def test_declining_customer_is_flagged_and_published(tmp_path):
    rng = np.random.default_rng(1)
    valences = list(np.clip(0.5 + rng.normal(0, 0.05, 4), -1, 1)) + [0.2, -0.1, -0.4, -0.6]
    states, alerts, outbox = run_history(tmp_path, valences)
    assert states[:4] == ["new", "stable", "stable", "stable"]
    assert states[-1] in ("declining", "at_risk")
    declines = [a for a in alerts if a["rule"] == "relationship_declining"]
    assert len(declines) == 1
    assert "intervention recommended" in declines[0]["reason"]
    assert len(json.loads(declines[0]["evidence"])["calls"]) >= 3
    assert len(outbox) == len(valences)
    assert outbox[-1]["customer"].startswith("c-") and "CRM-42" not in json.dumps(
        outbox
    )  # pseudonymised
    assert outbox[-1]["health"] < outbox[3]["health"]


@pytest.mark.slow
def test_stable_enthusiastic_customer_becomes_advocate_not_risk(tmp_path):
    states, alerts, _ = run_history(tmp_path, [0.6, 0.65, 0.6, 0.7, 0.65], arousal=0.7)
    assert all(s in ("new", "stable", "improving") for s in states)
    rules = [a["rule"] for a in alerts]
    assert "relationship_declining" not in rules
    assert rules.count("likely_advocate") == 1
