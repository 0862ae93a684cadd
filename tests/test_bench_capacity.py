"""`appliance bench capacity` end to end: real models, real pipeline, a real mosquitto.

Not a timed test: it checks that the report measures what it says (every score published is
received and matched to its utterance, latencies are ordered, the search and the real-time
runs are reported), not how fast this machine is.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from appliance.publish.broker import find_mosquitto


@pytest.mark.slow
def test_capacity_report_through_the_cli() -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance.cli",
            "bench",
            "capacity",
            "--calls",
            "2",
            "--seconds",
            "14",
        ]
        + ["--json", "--no-cold-start"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(out.stdout)
    assert "in real time" in out.stderr  # progress goes to stderr when --json is given

    (fast,) = report["runs"]
    assert fast["calls"] == 2 and fast["speed"] == 0.0
    # both figures are rounded in the report (wall to 10 ms, factor to 0.001)
    expected = fast["wall_s"] / report["call_seconds"]
    assert 0 < fast["load_factor"] == pytest.approx(expected, abs=0.002)
    assert report["largest_throughput_calls"] == (2 if fast["load_factor"] <= 1.0 else 0)

    (rt,) = report["realtime_runs"]
    assert rt["calls"] == 2 and rt["speed"] == 1.0
    # the real-time run lasts at least as long as its audio
    assert rt["wall_s"] >= report["call_seconds"]
    assert rt["utterances"] == rt["scored"] > 4
    # every committed score reached the subscriber and was matched to its utterance's end
    assert rt["received"] == rt["scored"]
    assert rt["published"] >= rt["scored"]  # utterance, call and alert messages all acked
    for prefix in ("latency_published", "customer_latency_published"):
        total, less = rt[f"{prefix}_ms"], rt[f"{prefix}_less_stt_ms"]
        assert 0 < total["p50"] <= total["p95"] <= total["max"] < 30_000
        assert less["max"] <= total["max"]
    # received after committed: the commit precedes the publish
    assert rt["latency_published_ms"]["max"] >= rt["latency_commit_ms"]["p50"]
    assert rt["kept_in_real_time"] == (
        rt["max_behind_s"] <= 2.0
        and rt["overruns"] == 0
        and rt["latency_published_less_stt_ms"]["p95"] <= 300.0
    )
    kept = [r["calls"] for r in report["realtime_runs"] if r["kept_in_real_time"]]
    assert report["largest_realtime_calls"] == max(kept, default=0)

    costs = report["stage_costs_per_call"]
    assert costs["stt_cpu_s"] > 0 and 0 < costs["features_emotion_share_of_stt"] < 1
    assert report["max_rss_mb"] > 100
    assert "cold_start" not in report
