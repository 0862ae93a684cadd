"""One customer id per site: the site key on every box, the id the CRM computes, the key id
that shows a box with the wrong key, and the policy switch that publishes references in clear."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys

import pytest
from conftest import ROOT
from support.fakes import FakeEmotion, constant, engines, result

from appliance.config import config_from_dict
from appliance.ops.analysis import analyze_file
from appliance.pipeline.call import CallMeta
from appliance.pipeline.records import CallFacts, alert_records
from appliance.publish import contract
from appliance.publish.pseudonym import PseudonymKeyError, key_id, new_key_file
from appliance.scoring.relationship import Signal
from appliance.store.connection import connect

DEMO = ROOT / "appliance" / "data" / "demo_call.wav"
META = CallMeta(position="pos-1", customer_ref="CRM-000123", call_type="support", segment="gold")


def published(tmp_path, name: str, mqtt: dict) -> list[dict]:
    """Outbox payloads of one call analysed by box `name` with the given [mqtt] section."""
    db_path = tmp_path / f"{name}.db"
    cfg = config_from_dict({"box": {"id": name}, "mqtt": mqtt}, base_dir=tmp_path)
    stub = FakeEmotion(constant(result("angry", 0.9, 0.8, 0.6, -0.7)))
    analyze_file(DEMO, cfg, engines(stub), db_path=db_path, meta=META)
    db = connect(db_path)
    try:
        return [json.loads(r[0]) for r in db.execute("SELECT payload FROM outbox").fetchall()]
    finally:
        db.conn.close()


def customers(rows: list[dict]) -> set[tuple[str, str | None]]:
    return {(r["customer"], r.get("customer_key")) for r in rows if "customer" in r}


def test_boxes_with_the_site_key_publish_the_id_the_crm_computes(tmp_path):
    key = new_key_file(tmp_path / "site.key")
    a = published(tmp_path, "box-a", {"customer_key_file": "site.key"})
    b = published(tmp_path, "box-b", {"customer_key_file": str(tmp_path / "site.key")})
    expected = "c-" + hmac.new(key, b"CRM-000123", hashlib.sha256).hexdigest()[:20]
    assert customers(a) == customers(b) == {(expected, key_id(key))}
    kinds = {r["schema"] for r in a if "customer" in r}
    assert {"call/1", "relationship/1"} <= kinds
    # without the site key each box has its own: the same customer gets two ids
    own_a = published(tmp_path / "a", "box-a", {})
    own_b = published(tmp_path / "b", "box-b", {})
    assert customers(own_a).isdisjoint(customers(own_b))


def test_crm_side_tool_computes_the_same_ids(tmp_path):
    key_file = tmp_path / "site.key"
    run = [sys.executable, "-m", "appliance.cli", "customer-key"]
    made = subprocess.run([*run, "new", str(key_file)], capture_output=True, text=True)
    assert made.returncode == 0 and key_id(key_file.read_bytes()) in made.stdout
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = subprocess.run([*run, "new", str(key_file)], capture_output=True, text=True)
    assert again.returncode == 2 and "never overwritten" in again.stderr
    out = subprocess.run(
        [*run, "pseudonym", "--key-file", str(key_file), "CRM-000123"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = published(tmp_path, "box-a", {"customer_key_file": str(key_file)})
    assert out.split() == ["CRM-000123", next(iter(customers(rows)))[0]]


def test_a_missing_or_short_site_key_is_refused_not_replaced(tmp_path):
    with pytest.raises(PseudonymKeyError, match="site.key does not exist"):
        published(tmp_path, "box-a", {"customer_key_file": "site.key"})
    assert not (tmp_path / "site.key").exists() and not (tmp_path / "pseudonym.key").exists()
    (tmp_path / "site.key").write_bytes(b"short")
    with pytest.raises(PseudonymKeyError, match="holds 5 bytes"):
        published(tmp_path, "box-a", {"customer_key_file": "site.key"})


def test_clear_references_only_when_the_site_says_so(tmp_path):
    new_key_file(tmp_path / "site.key")
    rows = published(
        tmp_path, "box-a", {"customer_key_file": "site.key", "pseudonymise_customers": False}
    )
    assert customers(rows) == {("CRM-000123", None)}


def test_segment_alerts_name_their_segment():
    facts = CallFacts("call-1", "pos-1", "CRM-1", "c-1", "support", "gold", "live", 0.0, "k-1")
    sig = Signal("segment_shift", "segment_shift", "investigate", "warning", 0.9, "r", {})
    _, body, _ = alert_records(sig, facts, "a-1", 3.0, None, 0.0)
    assert body["segment"] == "gold" and body["customer_key"] == "k-1"
    contract.check_payload("alert", contract.new_message("alert", "box-1", body))
