"""No customer reference in the system log: commands through a real broker to the daemon (applied,
refused by the contract, refused for an unknown position, refused by a stalled position) log what
happened, never the customer; the panel's access log is checked in test_panel_streams."""

from __future__ import annotations

import json
import logging
import queue

import pytest
from support.fakes import ScriptedSource
from support.mqtt import cti_client
from test_daemon import Running, _cfg, _rows, _wait

from appliance.capture import position
from appliance.publish.broker import LocalBroker, find_mosquitto
from appliance.publish.commands import CommandRejected

SECRET = "CRM-SECRET-4711"


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed")
def test_commands_are_logged_without_the_customer(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(position, "SUBMIT_WAIT_S", position.SUBMIT_WAIT_S)  # restored after
    with LocalBroker(persistence=False) as broker:
        cfg = _cfg(tmp_path, mqtt={"url": broker.url})
        db = cfg.resolve(cfg.paths.db)
        with Running(cfg, lambda pos: ScriptedSource()) as d:
            assert d.publisher.connected.wait(10)
            c = cti_client(broker.port, "cti-privacy")
            try:
                for cmd in (
                    {"position": "pos-1", "action": "start", "customer": SECRET},
                    {"position": "pos-1", "customer": SECRET + " with spaces"},  # contract
                    {"position": "pos-1", "customer": SECRET + "$"},  # pattern
                    {"position": "pos-9", "action": "start", "customer": SECRET},  # unknown
                ):
                    topic = "callcenter/v1/box-t/cmd/call"
                    c.publish(topic, json.dumps(cmd), qos=1).wait_for_publish(5)
                assert _wait(lambda: _rows(db, "SELECT customer_ref FROM calls") == [(SECRET,)])
                assert _wait(
                    lambda: d.publisher.commands_rejected + d.publisher.commands_failed >= 3
                )
            finally:
                c.loop_stop()
                c.disconnect()
            worker = d.workers["pos-1"]
            worker.commands = queue.Queue(maxsize=1)  # a stalled worker: the next one is refused
            monkeypatch.setattr(worker, "_apply_commands", lambda: None)
            worker.commands.put({"action": "update"})
            position.SUBMIT_WAIT_S = 0.1
            with pytest.raises(CommandRejected) as exc:
                d.dispatch({"position": "pos-1", "action": "update", "customer": SECRET}, "panel")
            assert SECRET not in str(exc.value)
            with pytest.raises(CommandRejected) as exc:
                d.dispatch({"position": "pos-1", "customer": SECRET + "!"}, "panel")
            assert SECRET not in str(exc.value)
    assert "position pos-1 takes no commands (1 waiting)" in caplog.text
    assert "rejected" in caplog.text and "command start from mqtt" in caplog.text
    assert SECRET not in caplog.text
