"""Admin settings are applied, strictly validated: the panel refuses non-finite numbers,
malformed broker URLs, credentials in URLs and plain MQTT off loopback (and never writes a
password into the audit log); the config file refuses NaN naming the key; `appliance retention`
and the daemon read the overrides; a stored override that no longer validates is ignored. And
the daemon's metrics endpoint: behind a token, with a warning off loopback."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request

import pytest
from support.fakes import ScriptedSource
from support.panel import ADM, ADM_PW, form_token, logged_in, users_db
from test_daemon import Running, _cfg, _opts, _wait
from test_retention import _call, _count, _utt

from appliance.cli import main
from appliance.config import ConfigError, config_from_dict, load_config
from appliance.panel import create_app, users
from appliance.publish.broker import LocalBroker, find_mosquitto
from appliance.store import overrides
from appliance.store.connection import connect
from appliance.store.retention import DAY
from appliance.store.writer import Store

RETENTION = {"transcripts_days": "7", "scores_days": "365", "outbox_sent_days": "7",
             "alerts_days": "180", "min_free_mb": "200"}  # fmt: skip


def admin_client(db):
    users_db(db, (ADM, "admin", ADM_PW))
    return logged_in(create_app({"DB_PATH": str(db), "SECRET_KEY": "k"}), ADM, ADM_PW)


@pytest.fixture
def admin(tmp_path):
    db = tmp_path / "a.db"
    client = admin_client(db)
    return db, client, form_token(client.get("/settings").get_data(as_text=True))


def stored(db, key):
    d = connect(db)
    try:
        row = d.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
        return None if row is None else json.loads(row[0])
    finally:
        d.conn.close()


@pytest.mark.parametrize(
    ("section", "form", "key"),
    [
        ("retention", {"transcripts_days": "nan"}, "retention.transcripts_days"),
        ("retention", {"scores_days": "inf"}, "retention.scores_days"),
        ("retention", {"alerts_days": "-1"}, "retention.alerts_days"),
        ("mqtt", {"url": "mqtt://x y"}, "mqtt.url"),
        ("mqtt", {"url": "mqtts://crm:hunter2-secret@broker.example:8883"}, "mqtt.url"),
        ("mqtt", {"url": "mqtt://broker.example:1883"}, "mqtt.url"),  # plain, off loopback
        ("mqtt", {"keepalive": "nan"}, "mqtt.keepalive"),
    ],
)
def test_bad_admin_settings_are_refused_naming_the_key(admin, section, form, key):
    db, client, token = admin
    base = RETENTION if section == "retention" else {"url": "", "prefix": "cc", "keepalive": "30"}
    r = client.post(f"/settings/{section}", data={"csrf_token": token, **base, **form})
    assert r.status_code == 302
    page = client.get("/settings").get_data(as_text=True)
    assert "not saved" in page and key in page
    assert stored(db, section) is None
    audit = users.recent_audit(users.open_db(db), 3)
    failed = next(a for a in audit if a["action"] == "setting_change")
    assert failed["ok"] == 0 and key in failed["detail"]["error"]
    assert "hunter2" not in json.dumps(audit) and "hunter2" not in page


def test_good_admin_settings_are_stored(admin):
    db, client, token = admin
    client.post(
        "/settings/retention", data={"csrf_token": token, **RETENTION, "transcripts_days": "1.5"}
    )
    client.post("/settings/mqtt", data={"csrf_token": token, "url": "mqtts://broker.example:8883",
                                        "prefix": "cc", "keepalive": "45"})  # fmt: skip
    assert stored(db, "retention")["transcripts_days"] == 1.5
    assert stored(db, "mqtt") == {"url": "mqtts://broker.example:8883", "prefix": "cc",
                                  "keepalive": 45, "pseudonymise_customers": False}  # fmt: skip
    page = client.get("/settings").get_data(as_text=True)
    assert "the daemon applies it at its next start" in page  # no daemon snapshot yet


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_config_file_refuses_non_finite_numbers(tmp_path, value, capsys):
    path = tmp_path / "a.toml"
    path.write_text(f"[retention]\ntranscripts_days = {value}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.key == "retention.transcripts_days"
    assert main(["check-config", str(path)]) == 1
    assert "retention.transcripts_days" in capsys.readouterr().err
    for key, doc in (
        ("panel.session_idle_minutes", {"panel": {"session_idle_minutes": float(value)}}),
        ("daemon.silence_end_s", {"daemon": {"silence_end_s": float(value)}}),
        ("mqtt.checkpoint_interval", {"mqtt": {"checkpoint_interval": float(value)}}),
    ):
        with pytest.raises(ConfigError) as exc:
            config_from_dict(doc)
        assert exc.value.key == key


def test_retention_command_applies_the_override(tmp_path, capsys):
    db = tmp_path / "r.db"
    s = Store(db)
    _call(s, "c-1", time.time() - 3 * DAY)
    _utt(s, "c-1", 0, time.time() - 3 * DAY)
    s.close()
    assert main(["retention", "--db", str(db)]) == 0  # config: 7 days
    assert _count(db, "transcripts") == 1
    d = connect(db)
    overrides.save(d, "retention", {"transcripts_days": 1.0})
    d.conn.close()
    assert main(["retention", "--db", str(db)]) == 0
    assert _count(db, "transcripts") == 0 and _count(db, "utterances") == 1
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["transcripts"] == 1


def test_an_override_that_no_longer_validates_is_ignored(tmp_path, caplog):
    cfg = config_from_dict({"paths": {"db": str(tmp_path / "a.db")}})
    d = connect(tmp_path / "a.db")
    from appliance.store import settings
    from appliance.store.connection import immediate, migrate

    migrate(d)
    with immediate(d):  # written by hand or an older version, past today's rules
        settings.put(d, "retention", json.dumps({"transcripts_days": float("nan")}))
        settings.put(d, "mqtt", json.dumps({"url": "mqtts://u:pw-in-url@h:8883"}))
    d.conn.close()
    with caplog.at_level(logging.ERROR):
        eff = overrides.effective_config(cfg, tmp_path / "a.db")
    assert eff.retention.transcripts_days == 7.0 and eff.mqtt.url == ""
    assert "retention.transcripts_days" in caplog.text and "pw-in-url" not in caplog.text


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto not installed")
def test_the_daemon_applies_the_overrides_at_start(tmp_path):
    """Config: publishing off, 0 MB floor. Override: a broker URL and a floor; the daemon
    connects to that broker and runs with that floor; the Settings page says it is in effect."""
    with LocalBroker(persistence=False) as broker:
        cfg = _cfg(tmp_path)
        db = cfg.resolve(cfg.paths.db)
        d = users.open_db(db)  # migrated, as the panel leaves it
        overrides.save(d, "mqtt", {"url": broker.url, "prefix": "callcenter", "keepalive": 30,
                                   "pseudonymise_customers": True})  # fmt: skip
        overrides.save(d, "retention", {"min_free_mb": 1.0})
        d.conn.close()
        time.sleep(0.05)
        with Running(cfg, lambda pos: ScriptedSource()) as daemon:
            assert daemon.publisher is not None and daemon.publisher.connected.wait(10)
            assert daemon.cfg.retention.min_free_mb == 1.0 and daemon.store.min_free_mb == 1.0
            assert _wait(lambda: daemon.health.last is not None)
            c = admin_client(db)
            assert _wait(
                lambda: "the running daemon applies it" in c.get("/settings").get_data(as_text=True)
            )


def _get(url, token=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_daemon_metrics_behind_a_token(tmp_path):
    (tmp_path / "metrics.token").write_text("tok-123\n")
    cfg = _cfg(tmp_path, daemon={"metrics_token_file": "metrics.token"})
    with Running(cfg, lambda pos: ScriptedSource(), _opts(metrics="127.0.0.1:0")) as d:
        port = d.metrics_server.server_address[1]
        assert _get(f"http://127.0.0.1:{port}/metrics")[0] == 401
        assert _get(f"http://127.0.0.1:{port}/metrics", "wrong")[0] == 401
        code, body = _get(f"http://127.0.0.1:{port}/metrics", "tok-123")
        assert code == 200 and "appliance_up 1" in body


def test_daemon_metrics_off_loopback_warns_and_an_unreadable_token_keeps_it_off(tmp_path, caplog):
    opts = _opts(metrics="0.0.0.0:0")
    with (
        caplog.at_level(logging.WARNING),
        Running(_cfg(tmp_path), lambda p: ScriptedSource(), opts) as d,
    ):
        assert d.metrics_server is not None
    assert "without a token" in caplog.text
    caplog.clear()
    cfg = _cfg(tmp_path, daemon={"metrics_token_file": "missing.token"})
    with caplog.at_level(logging.WARNING), Running(cfg, lambda p: ScriptedSource(), opts) as d:
        assert d.metrics_server is None
    assert "not started" in caplog.text and "without a token" not in caplog.text
    toml = tmp_path / "m.toml"
    toml.write_text('[daemon]\nmetrics_listen = "0.0.0.0:9108"\n')
    r = __import__("subprocess").run(
        [__import__("sys").executable, "-m", "appliance.cli", "check-config", str(toml)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0 and "daemon.metrics_token_file" in r.stderr
