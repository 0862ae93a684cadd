from appliance.config import RuleConfig
from appliance.scoring.rules import DEFAULT_RULES, RuleEngine

RULE = RuleConfig(
    name="low",
    signal="sentiment",
    op="<",
    threshold=-0.4,
    clear=-0.1,
    min_utterances=2,
    duration=2,
    cooldown=30,
)


def feed(engine, values, start=0.0, step=5.0):
    fired = []
    for i, v in enumerate(values):
        fired += engine.evaluate(
            {"sentiment": v, "customer_utterances": i + 1}, at=start + i * step
        )
    return fired


def test_fires_after_duration_and_min_utterances():
    e = RuleEngine([RULE], "support")
    assert feed(e, [-0.9]) == []
    e = RuleEngine([RULE], "support")
    fired = feed(e, [-0.9, -0.9])
    assert [a.rule for a in fired] == ["low"] and fired[0].at == 5.0
    assert "escalate" not in fired[0].reason and "negative" in fired[0].reason


def test_hysteresis_and_cooldown():
    e = RuleEngine([RULE], "support")
    # stays low: fires once, does not re-fire until the signal recovered past `clear`
    fired = feed(e, [-0.9, -0.9, -0.9, -0.9, -0.9, -0.9])
    assert len(fired) == 1
    e = RuleEngine([RULE], "support")
    fired = feed(
        e, [-0.9, -0.9, 0.0, -0.9, -0.9], step=20.0
    )  # recovered, then low again after the cooldown
    assert len(fired) == 2
    e = RuleEngine([RULE], "support")
    fired = feed(e, [-0.9, -0.9, 0.0, -0.9, -0.9], step=2.0)  # within the 30 s cooldown
    assert len(fired) == 1


def test_budget_limits_alerts_per_call():
    rules = [
        RuleConfig(
            name=f"r{i}", signal="sentiment", op="<", threshold=0.0, min_utterances=1, duration=1
        )
        for i in range(5)
    ]
    e = RuleEngine(rules, "support", budget=2)
    assert len(feed(e, [-0.5])) == 2


def test_call_type_filter():
    names = {r.name for r in RuleEngine(None, "support").rules}
    assert "high_commitment" not in names and "sentiment_declining" in names
    assert "high_commitment" in {r.name for r in RuleEngine(None, "sales").rules}
    assert len(DEFAULT_RULES) >= 5


def test_gated_signals_are_published_under_contract_names():
    from appliance.publish import contract

    rule = next(r for r in DEFAULT_RULES if r.name == "sentiment_declining")
    assert rule.signal == "decline"
    e = RuleEngine([rule], "support")
    fired = []
    for i in range(6):
        fired += e.evaluate({"decline": -0.9, "customer_utterances": i + 1}, at=5.0 * i)
    assert [a.signal for a in fired] == ["sentiment_slope"]
    body = {
        "alert_id": "a1",
        "call_id": "c1",
        "position": "pos-1",
        "rule": fired[0].rule,
        "severity": fired[0].severity,
        "action": fired[0].action,
        "signal": fired[0].signal,
        "value": fired[0].value,
        "threshold": fired[0].threshold,
        "at": fired[0].at,
    }
    contract.check_payload("alert", contract.new_message("alert", "box-01", body))
