import numpy as np
import pytest

from appliance.scoring.relationship import update_customer, update_segment


def history(sentiments, enthusiasm=None):
    state, all_signals, states = None, [], []
    for i, s in enumerate(sentiments):
        e = enthusiasm[i] if enthusiasm else 0.4
        state, sig = update_customer(
            state, f"call-{i}", {"sentiment_mean": s, "enthusiasm": e}, 1000.0 + i
        )
        all_signals.append(sig)
        states.append(state)
    return states, all_signals


def first_flag(signals, rule):
    return next((i for i, s in enumerate(signals) if any(x.rule == rule for x in s)), None)


@pytest.mark.parametrize("seed", range(5))
def test_decline_is_flagged_within_a_few_calls_and_stable_is_not(seed):
    rng = np.random.default_rng(seed)
    stable = list(0.4 + rng.normal(0, 0.08, 12))
    declining = list(0.4 + rng.normal(0, 0.08, 6)) + list(
        0.4 - 0.15 * np.arange(1, 7) + rng.normal(0, 0.08, 6)
    )
    _, sig_stable = history(stable)
    st_decl, sig_decl = history(declining)
    assert first_flag(sig_stable, "relationship_declining") is None
    flagged = first_flag(sig_decl, "relationship_declining")
    assert flagged is not None and 6 <= flagged <= 9  # within 4 calls of the start of the decline
    assert st_decl[-1]["state"] in ("declining", "at_risk")
    assert st_decl[-1]["health"] < history(stable)[0][-1]["health"]


def test_improving_customer_trend_and_advocacy():
    states, sigs = history(
        [-0.3, -0.1, 0.1, 0.3, 0.5, 0.6, 0.7], enthusiasm=[0.2, 0.3, 0.4, 0.6, 0.8, 0.85, 0.9]
    )
    assert states[-1]["trend"] > 0.05 and states[-1]["state"] in ("improving", "stable")
    assert first_flag(sigs, "relationship_declining") is None
    adv = first_flag(sigs, "likely_advocate")
    assert adv is not None
    assert (
        sum(any(x.rule == "likely_advocate" for x in s) for s in sigs) == 1
    )  # not repeated every call
    assert states[-1]["advocacy"] > 0.6


def test_single_bad_call_is_not_a_trend():
    _, sigs = history([0.5, 0.5, 0.45, -0.4, 0.5, 0.5, 0.55])
    assert first_flag(sigs, "relationship_declining") is None


def test_segment_shift():
    state, flagged = None, []
    for i, s in enumerate([0.4, 0.35, 0.45, 0.4, 0.42, 0.38, -0.2, -0.3, -0.25, -0.3]):
        state, sig = update_segment(state, "retail", f"c{i}", s)
        flagged.append(bool(sig))
    assert not any(flagged[:6]) and any(flagged[6:])


def test_persistently_negative_customer_is_at_risk_whatever_the_trend():
    states, sigs = history([-0.35] * 6)
    assert states[-1]["trend"] == 0.0  # no shift at all: the old rule saw "stable", risk 0
    assert states[-1]["state"] == "at_risk" and states[-1]["risk"] > 0.7
    assert first_flag(sigs, "relationship_negative") == 2  # from the third call on
    assert sum(len(s) for s in sigs) == 1  # raised once, not on every call
    mild, mild_sigs = history([-0.05] * 6)
    assert mild[-1]["state"] == "stable" and mild[-1]["risk"] == 0.0
    assert not any(mild_sigs)


def test_calls_without_scores_are_skipped_not_counted_as_zero():
    from appliance.scoring.relationship import has_score, replay_customer

    scored = [("a", {"sentiment_mean": 0.5, "enthusiasm": 0.4}, 1.0)] * 3
    unscored = ("x", {"sentiment_mean": None, "enthusiasm": None}, 2.0)
    with_gaps = replay_customer([scored[0], unscored, scored[1], unscored, scored[2]])
    assert with_gaps == replay_customer(scored)
    assert with_gaps["calls"] == 3 and with_gaps["slow"] == 0.5
    assert replay_customer([unscored]) is None
    assert not has_score(unscored[1])
    with pytest.raises(ValueError, match="no customer sentiment"):
        update_customer(None, "x", unscored[1], 2.0)


def test_replay_raises_the_same_signals_as_calls_folded_one_by_one():
    from appliance.scoring.relationship import customer_signals, replay_customer

    rng = np.random.default_rng(3)
    sentiments = list(0.4 + rng.normal(0, 0.05, 5)) + [-0.1, -0.3, -0.5, -0.6]
    states, sigs = history(sentiments)
    calls = [
        (f"call-{i}", {"sentiment_mean": s, "enthusiasm": 0.4}, 1000.0 + i)
        for i, s in enumerate(sentiments)
    ]
    for n in range(1, len(calls)):
        before, after = replay_customer(calls[:n]), replay_customer(calls[: n + 1])
        assert after == states[n]
        assert [s.rule for s in customer_signals(before, after)] == [s.rule for s in sigs[n]]
