"""The demo's seeded history on its own (stand-in emotion engine: the seeding logic is under
test; tests/test_demo_e2e.py runs it with the real models): once per database, dated back over
weeks, marked as demo data, relationships with a trend, risk and advocacy."""

from __future__ import annotations

import json
import time

from support.fakes import FakeEmotion, constant, engines, result

from appliance.ops.demo import demo_calls, demo_config
from appliance.ops.demo_history import SOURCE, history_plan, seed_history
from appliance.store.connection import connect


def test_history_is_seeded_once_dated_back_and_marked(tmp_path):
    db_path = tmp_path / "demo.db"
    cfg = demo_config(db_path)
    eng = engines(FakeEmotion(constant(result("happy", 0.9, 0.7, 0.6, 0.5))))
    wav = demo_calls()[0].wav
    plan = history_plan()
    assert seed_history(cfg, db_path, eng, wav, None) == len(plan) >= 12
    assert seed_history(cfg, db_path, eng, wav, None) == 0  # a second run seeds nothing
    db = connect(db_path)
    try:
        calls = db.execute(
            "SELECT source, customer_ref, started_at FROM calls ORDER BY started_at"
        ).fetchall()
        rels = {
            r[0]: json.loads(r[1])
            for r in db.execute("SELECT customer_ref, detail FROM relationships").fetchall()
        }
    finally:
        db.conn.close()
    assert len(calls) == len(plan) and {c[0] for c in calls} == {SOURCE}
    now = time.time()
    span_days = (calls[-1][2] - calls[0][2]) / 86400
    assert span_days > 20 and now - calls[-1][2] > 2 * 86400  # weeks ago, none today
    assert len(rels) == len({c.meta.customer_ref for c in plan}) >= 4
    for state in rels.values():  # the history the Customers page draws is dated back too
        ts = [h["ts"] for h in state["history"]]
        assert ts == sorted(ts) and now - ts[0] > 20 * 86400
