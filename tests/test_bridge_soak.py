"""Soak: 10,000 messages from 4 simulated boxes through 3 bridge instances into PostgreSQL,
none lost, none stored twice; the throughput is printed (`scripts/bridge_soak.py` reports it)."""

from __future__ import annotations

import json

import pytest
from support.soak import soak


@pytest.mark.slow
def test_ten_thousand_messages_four_boxes_three_bridges(tmp_path, pg_dsn):
    r = soak(tmp_path, pg_dsn, messages=10_000, boxes=4, bridges=3, progress=print)
    print(json.dumps(r))
    assert r["messages"] == 10_000 and r["boxes_flushed"]
    assert r["lost"] == 0 and r["unexpected"] == 0 and r["stored"] == 10_000
    assert len(r["per_instance"]) == 3  # the shared subscription spread the load
    assert min(r["per_instance"].values()) > 10_000 / 3 * 0.5
    assert r["max_boxes_per_customer"] == 4  # one customer across the four boxes
    assert r["webhook_delivered"] == r["alerts_and_signals"] > 0
    assert r["webhook_bad_signatures"] == 0
