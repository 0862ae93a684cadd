"""docs/crm.md and its Node-RED example do what they say: the flow's verification code (run by
Node.js) accepts the bridge's signed bodies, refuses tampered ones, drops a second copy; the
commands the page shows parse."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess

import pytest
from conftest import ROOT

from appliance.bridge.ingest import alert_event, signal_event
from appliance.bridge.webhook import encode, sign
from appliance.cli import build_parser
from appliance.scoring.relationship import Signal

FLOW = ROOT / "docs" / "examples" / "node-red-flow.json"
DOC = ROOT / "docs" / "crm.md"
SECRET = "node-red-secret-0123"

HARNESS = r"""
const crypto = require("crypto");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const store = {};
const flow = {get: (k) => store[k], set: (k, v) => { store[k] = v; }};
const env = {get: (k) => (k === "APPLIANCE_WEBHOOK_SECRET" ? input.secret : undefined)};
const fn = new Function("msg", "env", "flow", "crypto", "Buffer", input.func);
const out = input.cases.map((c) => {
  const r = fn({payload: JSON.parse(c.body), req: {headers: c.headers}}, env, flow, crypto, Buffer);
  return r[0] ? "accepted" : `${r[1].statusCode} ${r[1].payload}`;
});
console.log(JSON.stringify(out));
"""


def bodies() -> list[str]:
    alert = {
        "schema": "alert/1",
        "msg_id": "0b8f7c1e-2f3a-4c5d-8e9f-0a1b2c3d4e5f",
        "seq": 41,
        "box_id": "box-01",
        "ts": 1790000000.25,
        "alert_id": "a-1",
        "call_id": "c-1",
        "customer": "c-1234567890abcdef1234",
        "rule": "customer_upset",
        "severity": "critical",
        "action": "escalate",
        "signal": "sentiment",
        "value": -0.6558,
        "threshold": -0.5,
        "at": 44.0,  # an integral float: JSON.stringify writes 44
    }
    sig = Signal(
        "relationship_negative",
        "relationship_risk",
        "intervention_recommended",
        "critical",
        1.0,
        "persistently negative: sentiment over the last calls [-0.35, -0.35]; café",
        {},
    )
    call = {"call_id": "c-2", "box_id": "box-02", "customer": "c-1", "segment": "gold"}
    rel = {"calls": 6, "boxes": 2, "health": 0.2, "trend": 0.0, "risk": 1.0, "advocacy": 0.0}
    return [
        encode(alert_event(alert, "gold")),
        encode(signal_event("5f0c1f8e-0000-4000-8000-000000000001", sig, call, rel)),
    ]


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_node_red_flow_verifies_the_bridges_signatures():
    flow = json.loads(FLOW.read_text())
    (verify,) = [n for n in flow if n.get("name") == "verify signature, drop duplicates"]
    cases = []
    for body in bodies():
        key = json.loads(body)["id"]
        good = {
            "x-appliance-signature": sign(SECRET.encode(), body.encode()),
            "idempotency-key": key,
        }
        cases += [
            {"body": body, "headers": good},
            {"body": body, "headers": good},  # redelivered
            {"body": body.replace('"critical"', '"info"'), "headers": good},  # tampered
            {"body": body, "headers": {**good, "x-appliance-signature": "sha256=00"}},
        ]
    out = subprocess.run(
        ["node", "-e", HARNESS],
        input=json.dumps({"func": verify["func"], "secret": SECRET, "cases": cases}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    results = json.loads(out.stdout)
    assert results == ["accepted", "200 duplicate", "401 bad signature", "401 bad signature"] * 2


def test_bodies_are_written_as_javascript_writes_them():
    alert, signal = bodies()
    for body in (alert, signal):
        assert encode(json.loads(body)) == body
    assert '"at":44,' in alert and '"risk":1,' in signal  # integral numbers without ".0"
    assert "café" in signal  # UTF-8, not \u escapes


def test_commands_on_the_page_parse():
    parser = build_parser()
    shown = [
        line.strip()
        for block in DOC.read_text().split("```")[1::2]
        for line in block.replace("\\\n", " ").splitlines()
        if line.strip().startswith("appliance ")
    ]
    assert len(shown) >= 5
    for line in shown:
        parser.parse_args(shlex.split(line.split(" #")[0])[1:])


def test_the_config_examples_on_the_page_validate():
    import tomllib

    from appliance.config import config_from_dict

    blocks = [b[len("toml") :] for b in DOC.read_text().split("```")[1::2] if b.startswith("toml")]
    assert len(blocks) >= 2
    for block in blocks:
        config_from_dict(tomllib.loads(block))
