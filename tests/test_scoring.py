import pytest

from appliance.scoring.call import CallScorer, ScoredUtterance, fuse, overlap, slope_per_minute
from appliance.types import EmotionResult


def emo(valence, arousal=0.0, conf=0.8, uncertain=False, label="neutral"):
    return EmotionResult(label, conf, 0.5, arousal, valence, uncertain)


def test_fusion_weights_uncertain_acoustics_less():
    sure = fuse(emo(-0.8), 0.6, 8)
    unsure = fuse(emo(-0.8, uncertain=True), 0.6, 8)
    assert sure.value < unsure.value  # the text's +0.6 wins more when acoustics are uncertain
    assert unsure.confidence < sure.confidence
    assert fuse(None, None, 0).value is None
    assert fuse(emo(0.5), 0.0, 2).value == pytest.approx(0.5)  # 2 words, VADER 0 = no opinion
    # several words without sentiment words are weak evidence of a neutral state (words first)
    assert 0 < fuse(emo(0.5), 0.0, 8).value < 0.35
    assert -1 <= fuse(emo(-1.0), -1.0, 10).value <= 1


def test_valence_comes_from_the_words_first():
    # a confident "sad" voice against clearly positive words: the words win
    assert fuse(emo(-0.7, conf=0.9), 0.8, 8).value > 0.35
    # without a transcript the voice still speaks, and an uncertain voice says nothing
    assert fuse(emo(-0.7, conf=0.9), None, 0).value == pytest.approx(-0.7)
    assert fuse(emo(-0.7, uncertain=True), None, 0).value is None


def _utt(i, t, n_words, emotion=None, text=None, dur=2.0):
    f = fuse(emotion, text, n_words)
    return ScoredUtterance(i, "customer", t, t + dur, emotion, f.value, f.confidence, n_words)


def test_backchannels_do_not_enter_the_sentiment_series():
    sc = CallScorer()
    sad = emo(-0.7, conf=0.95, label="sad")
    sc.add(_utt(0, 0, 9, emo(0.1), 0.4))
    for i in range(1, 6):  # "Mm-hmm." / "Okay." scored sad with high confidence
        sc.add(_utt(i, 5 * i, 1, sad, 0.0, dur=0.8))
    t, s = sc.sentiment_series()
    assert len(s) == 1 and s[0] > 0
    assert sc.signals()["upset"] == 0.0


def test_text_cue_is_recovered_from_the_fused_sentiment():
    u = _utt(0, 0, 8, emo(-0.4, conf=0.8), -0.6)
    assert u.text_cue == pytest.approx(-0.6)
    assert _utt(1, 0, 8, emo(-0.4, uncertain=True), 0.5).text_cue == pytest.approx(0.5)
    assert _utt(2, 0, 0, emo(-0.4), None).text_cue is None


def test_upset_needs_sustained_negative_evidence():
    # one weak cue per utterance (a negative voice, words without sentiment): no alert signal
    weak = CallScorer()
    for i in range(6):
        weak.add(_utt(i, 5 * i, 8, emo(-0.6, conf=0.6, label="sad"), 0.0))
    assert weak.signals()["negative_evidence"] == 0 and weak.signals()["upset"] == 0.0
    # negative words and a negative voice together, several times: upset
    both = CallScorer()
    for i in range(6):
        both.add(_utt(i, 5 * i, 8, emo(-0.6, conf=0.6, label="angry"), -0.7))
    sig = both.signals()
    assert sig["negative_evidence"] == 4 and sig["upset"] < -0.4


def test_slope_and_overlap():
    assert slope_per_minute([0, 30, 60], [1.0, 0.0, -1.0]) == pytest.approx(-2.0)
    assert slope_per_minute([0, 1], [0, 1]) is None
    n, s = overlap([(0, 5), (10, 12)], [(4, 6), (11.9, 13), (20, 21)])
    assert n == 1 and s == pytest.approx(1.0)  # the 0.1 s blip is a back-channel, not overtalk


def _call(valences, agent=True):
    sc = CallScorer(call_type="check-in")
    t = 0.0
    for i, v in enumerate(valences):
        if agent:
            sc.add(ScoredUtterance(2 * i, "agent", t, t + 2, None, None, 0.0, 6))
            t += 2.5
        e = emo(v, arousal=0.5)
        sc.add(ScoredUtterance(2 * i + 1, "customer", t, t + 3, e, fuse(e, None, 0).value, 0.8, 7))
        t += 3.5
    return sc


def test_summary_shows_a_decline():
    s = _call([0.8, 0.6, 0.3, -0.1, -0.5, -0.8]).summary()
    assert s["sentiment_start"] > 0.4 and s["sentiment_end"] < -0.3
    assert s["sentiment_slope"] < 0
    assert s["customer_utterances"] == 6 and s["agent_utterances"] == 6
    assert s["talk_listen_ratio"] == pytest.approx(12 / 18, rel=0.01)
    assert s["longest_silence_s"] == pytest.approx(0.5, abs=0.01)
    assert sum(s["emotion_mix"].values()) == pytest.approx(1.0)


def test_health_is_higher_for_a_good_call():
    good = _call([0.6, 0.7, 0.8, 0.7]).health()
    bad = _call([-0.2, -0.5, -0.7, -0.8]).health()
    assert 0 <= bad < good <= 1


def test_negative_words_in_a_calm_voice_are_one_cue_not_a_strong_one():
    calm = EmotionResult("neutral", 0.93, 0.0, -0.8, -0.01, False)
    said_calmly = _utt(0, 0, 4, calm, -0.77)  # "Something is terribly wrong."
    assert said_calmly.negative_cues == 1
    assert _utt(1, 0, 4, None, -0.77).negative_cues == 2  # no voice to say otherwise
    tense = EmotionResult("angry", 0.8, 0.9, 0.9, -0.6, False)
    assert _utt(2, 0, 4, tense, -0.3).negative_cues == 2  # both cues
