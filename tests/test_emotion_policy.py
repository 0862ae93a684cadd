"""Abstention, deployment prior and out-of-distribution pull (appliance.emotion.policy), and how
EmotionModel applies them from a card."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.emotion import policy as P
from appliance.emotion.model import make_result
from appliance.types import EMOTION_LABELS, EmotionResult


def _res(label="sad", conf=0.9, uncertain=False) -> EmotionResult:
    return EmotionResult(label, conf, 0.5, 0.0, -0.6, uncertain)


@pytest.mark.parametrize(
    "text",
    ["Mm-hmm.", "Okay.", "Yeah, yeah.", "Thank you.", "Bye.", "Okay, thank you so much.", "Hello?"],
)
def test_backchannels(text):
    assert P.is_backchannel(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        None,
        "I want to cancel my account.",
        "The service light is on again",
        "Thank you for nothing, this is unacceptable",
        "T i.",
    ],
)
def test_not_backchannels(text):
    assert not P.is_backchannel(text)


def test_transcript_rule_marks_uncertain_and_keeps_the_rest():
    r = _res()
    out = P.abstain_on_transcript(r, "Thank you.")
    assert out.uncertain and out.label == r.label and out.confidence == r.confidence
    assert P.abstain_on_transcript(r, "My car makes a horrible noise") is r
    assert P.abstain_on_transcript(None, "okay") is None


def test_prior_adjustment_is_bayes_rule():
    p = np.full(7, 1 / 7)
    prior = P.normalise_prior([8, 1, 1, 1, 1, 1, 1], 7)
    q = P.adjust_prior(p, prior)
    assert q.argmax() == 0 and q[0] == pytest.approx(8 / 14)
    # a strong likelihood still wins over the prior
    strong = np.array([0.01, 0.01, 0.9, 0.02, 0.02, 0.02, 0.02])
    assert P.adjust_prior(strong, prior).argmax() == EMOTION_LABELS.index("sad")
    # from a non-uniform training prior back to uniform
    assert P.adjust_prior(q, np.full(7, 1 / 7), prior) == pytest.approx(p)
    with pytest.raises(ValueError):
        P.normalise_prior([1, 2, 3], 7)
    with pytest.raises(ValueError):
        P.normalise_prior([-1, 1, 1, 1, 1, 1, 1], 7)


def test_ood_scores_training_like_rows_low_and_far_rows_high():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(3000, 40)) @ rng.normal(size=(40, 40)) * 0.3
    ood = P.fit_ood(train, k=8)
    inside = ood.score(train[:200])
    assert 0.5 < np.median(inside) < 1.5  # scaled to about 1 in distribution
    far = ood.score(train[:200] + 5.0)
    assert np.all(far > np.quantile(inside, 0.99))
    q = P.OodModel(ood.mean, ood.components, ood.eigvals, ood.res_var, 1.0, 3.0)
    assert q.weight(0.5) == 0 and q.weight(2.0) == pytest.approx(0.5) and q.weight(9) == 1
    back = P.OodModel.from_json(q.to_json())
    assert back.score(train[:5]) == pytest.approx(q.score(train[:5]), rel=1e-4)


def _model_like(prior=None, ood=None, min_s=0.0):
    """An EmotionModel carrying only what `EmotionModel.result` reads (no ONNX session)."""
    from appliance.emotion.model import EmotionModel

    m = object.__new__(EmotionModel)
    m.threshold, m.arousal_head_weight = 0.5, 0.0
    m.arousal_method, m.arousal_threshold = "class_sum", 0.0
    m.arousal_high_labels = ("happy", "angry", "fearful", "disgust", "surprised")
    m.prior, m.ood, m.min_evidence_s = prior, ood, min_s
    return m


def test_model_result_applies_prior_ood_and_duration():
    sad = np.array([0.05, 0.05, 0.6, 0.1, 0.1, 0.05, 0.05])
    plain = _model_like().result(sad, 0.5, None)
    assert plain.label == "sad" and not plain.uncertain
    prior = P.normalise_prior([0.8, 0.07, 0.03, 0.05, 0.015, 0.015, 0.02], 7)
    m = _model_like(prior=prior)
    assert m.result(sad, 0.5, None).label == "neutral"  # calm speech is the common case
    # arousal stays the voice's (from the model's own probabilities, before the prior)
    assert m.result(sad, 0.5, None).arousal == pytest.approx(plain.arousal)
    ood = P.OodModel(np.zeros(3), np.eye(3), np.ones(3), 1.0, 1.0, 2.0)
    m = _model_like(ood=ood)
    near, far = m.result(sad, 0.5, None, ood=0.5), m.result(sad, 0.5, None, ood=5.0)
    assert near.label == "sad" and not near.uncertain
    assert far.uncertain and far.confidence == pytest.approx(1 / 7)  # pulled to the prior
    short = _model_like(min_s=1.0).result(sad, 0.5, None, duration=0.8)
    assert short.uncertain and short.label == "sad"
    assert not _model_like(min_s=1.0).result(sad, 0.5, None, duration=1.2).uncertain


def test_make_result_can_take_arousal_from_other_probabilities():
    calm = np.array([0.9, 0.02, 0.02, 0.02, 0.02, 0.01, 0.01])
    angry = np.array([0.05, 0.05, 0.05, 0.7, 0.05, 0.05, 0.05])
    r = make_result(calm, 0.5, 0.5, arousal_method="class_sum", arousal_probs=angry)
    assert r.label == "neutral" and r.arousal > 0
