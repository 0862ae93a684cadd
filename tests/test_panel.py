"""Supervisor panel: route map, login, CSRF, rate limit, roles, headers, pages, API, SSE, CLI."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.sample import fill_sample, replay_call

from appliance.panel import create_app, ensure_demo_user, users
from appliance.panel.cli import route_lines
from appliance.pipeline.call import CallMeta

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {"/login", "/logout", "/healthz", "/static/<path:filename>"}
SUP, SUP_PW = "sup", "supervisor-pw-1"
ADM, ADM_PW = "adm", "admin-pw-12345"


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("panel") / "panel.db"
    ids = fill_sample(path)
    db = users.open_db(path)
    users.add_user(db, SUP, "supervisor", SUP_PW)
    users.add_user(db, ADM, "admin", ADM_PW)
    db.conn.close()
    return path, ids


@pytest.fixture
def app(sample_db):
    return create_app(
        {
            "DB_PATH": str(sample_db[0]),
            "METRICS_TOKEN": "metrics-token-xyz",
            "SECRET_KEY": "test-secret",
        }
    )


def csrf_from(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert m, "no CSRF token in page"
    return m.group(1)


def login(client, name=SUP, password=SUP_PW):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"username": name, "password": password, "csrf_token": token})


def page_token(client, path="/") -> str:
    return csrf_from(client.get(path).get_data(as_text=True))


def dummy_url(rule) -> str:
    url = rule.rule
    for arg in rule.arguments:
        url = re.sub(r"<(?:[^:<>]+:)?" + arg + ">", "x-" + arg, url)
    return url


# -- route map -----------------------------------------------------------------------------


def test_every_non_public_route_refuses_anonymous_requests(app):
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.rule in PUBLIC:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            resp = client.open(dummy_url(rule), method=method)
            assert resp.status_code in (302, 401, 403), (method, rule.rule, resp.status_code)
            if resp.status_code == 302:
                assert resp.headers["Location"].startswith("/login"), (
                    rule.rule,
                    resp.headers["Location"],
                )
            checked += 1
    assert checked >= 20


def test_public_routes(app):
    client = app.test_client()
    assert client.get("/login").status_code == 200
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/static/panel.css").status_code == 200
    assert client.get("/static/vendor/uplot/uPlot.iife.min.js").status_code == 200
    assert client.get("/logout").status_code == 302
    assert client.get("/metrics").status_code == 401


def test_list_routes_needs_no_database(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "web", "--list-routes"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert list(tmp_path.iterdir()) == []  # no database, no secret file
    assert all(re.fullmatch(r"[A-Z]+(,[A-Z]+)* /\S*", line) for line in out), out
    for line in (
        "GET / ",
        "GET,POST /login",
        "GET /api/stream",
        "POST /api/alerts/<alert_id>/ack",
        "GET /metrics",
        "GET /healthz",
        "GET /api/openapi.json",
        "POST /settings/users",
    ):
        assert (
            any((line if line.endswith(" ") else line + " ").strip() == x for x in out)
            or line.strip() in out
        ), line
    assert out == route_lines(create_app({"DB_PATH": None}))


# -- login, CSRF, rate limit ---------------------------------------------------------------


def test_login_with_form_and_logout(app, sample_db):
    client = app.test_client()
    resp = login(client)
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    token = page_token(client)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").status_code == 302
    db = users.open_db(sample_db[0])
    actions = [r["action"] for r in users.recent_audit(db, 5)]
    db.conn.close()
    assert "logout" in actions and "login_ok" in actions


def test_login_post_without_csrf_token_is_refused(app):
    client = app.test_client()
    client.get("/login")
    resp = client.post("/login", data={"username": SUP, "password": SUP_PW})
    assert resp.status_code == 400
    assert client.get("/").status_code == 302  # still not logged in


def test_wrong_password_is_refused_and_audited(app, sample_db):
    client = app.test_client()
    resp = login(client, SUP, "wrong-password")
    assert resp.status_code == 401
    assert b"Wrong user name or password" in resp.data
    assert login(client, "nobody", "whatever-pw").status_code == 401
    db = users.open_db(sample_db[0])
    failed = [r for r in users.recent_audit(db, 10) if r["action"] == "login_failed"]
    db.conn.close()
    assert failed and failed[0]["ok"] == 0 and failed[0]["ip"] == "127.0.0.1"


def test_repeated_bad_logins_get_429(app):
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    codes = [
        client.post(
            "/login", data={"username": SUP, "password": f"bad-{i}", "csrf_token": token}
        ).status_code
        for i in range(11)
    ]
    assert codes[:10] == [401] * 10 and codes[10] == 429
    # even the right password is refused until the minute is over
    resp = client.post("/login", data={"username": SUP, "password": SUP_PW, "csrf_token": token})
    assert resp.status_code == 429


def test_successful_logins_do_not_count_against_the_limit(app):
    for _ in range(12):  # same client address, fresh sessions
        assert login(app.test_client()).status_code == 302


def test_open_redirect_is_not_followed(app):
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    resp = client.post(
        "/login?next=//evil.example/x",
        data={"username": SUP, "password": SUP_PW, "csrf_token": token},
    )
    assert resp.headers["Location"] == "/"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\\evil.example",
        "/\t/evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/%0a/x\n",
        "",
        None,
    ],
)
def test_safe_local_path_refuses_foreign_targets(target):
    from appliance.panel.security import safe_local_path

    assert safe_local_path(target, "/") == "/"
    assert safe_local_path("/calls?position=pos-1", "/") == "/calls?position=pos-1"


def test_api_post_needs_csrf_header(app, sample_db):
    client = app.test_client()
    login(client)
    alert = client.get("/api/alerts").get_json()["items"][0]
    resp = client.post(f"/api/alerts/{alert['id']}/ack")
    assert resp.status_code == 400
    token = page_token(client)
    resp = client.post(f"/api/alerts/{alert['id']}/ack", headers={"X-CSRFToken": token})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["acknowledged"] and body["acknowledged_by"] == SUP
    assert (
        client.post("/api/alerts/no-such-alert/ack", headers={"X-CSRFToken": token}).status_code
        == 404
    )


def test_alert_ack_by_form(app):
    client = app.test_client()
    login(client)
    html = client.get("/alerts").get_data(as_text=True)
    alert_id = re.search(r'data-alert-id="([^"]+)"', html).group(1)
    token = csrf_from(html)
    assert client.post(f"/alerts/{alert_id}/ack", data={"back": "/alerts"}).status_code == 400
    resp = client.post(
        f"/alerts/{alert_id}/ack", data={"csrf_token": token, "back": "//evil.example"}
    )
    assert resp.status_code == 302 and resp.headers["Location"] == "/alerts"
    acked = client.get("/api/alerts?state=acknowledged&limit=500").get_json()["items"]
    assert alert_id in [a["id"] for a in acked]


# -- headers and cookies -------------------------------------------------------------------


def test_security_headers(app):
    client = app.test_client()
    for resp in (client.get("/login"), client.get("/healthz")):
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "same-origin"
        assert resp.headers["Cache-Control"] == "no-store"
    login(client)
    resp = client.get("/api/positions/live")
    assert "Content-Security-Policy" in resp.headers and resp.headers["X-Frame-Options"] == "DENY"


def test_templates_have_no_inline_scripts_or_styles():
    web = ROOT / "web" / "templates"
    for path in web.glob("*.html"):
        text = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path
        assert not re.search(r"\sstyle\s*=", text), path
        assert "<style" not in text, path
        assert not re.search(r"\son[a-z]+\s*=", text), path
    for js in (ROOT / "web" / "static" / "js").glob("*.js"):
        text = js.read_text()
        assert ".innerHTML" not in text and "eval(" not in text, js


def test_session_cookie_flags(sample_db):
    plain = create_app({"DB_PATH": str(sample_db[0]), "SECRET_KEY": "k"})
    resp = login(plain.test_client())
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("panel=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    tls = create_app({"DB_PATH": str(sample_db[0]), "SECRET_KEY": "k", "TLS": True})
    client = tls.test_client()
    token = csrf_from(client.get("/login", base_url="https://localhost").get_data(as_text=True))
    resp = client.post(
        "/login",
        base_url="https://localhost",
        data={"username": SUP, "password": SUP_PW, "csrf_token": token},
        headers={"Referer": "https://localhost/login"},
    )
    assert resp.status_code == 302
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("__Host-panel=") and "Secure" in cookie and "HttpOnly" in cookie


# -- roles and settings --------------------------------------------------------------------


def test_supervisor_cannot_reach_settings(app):
    client = app.test_client()
    login(client)
    assert client.get("/settings").status_code == 403
    token = page_token(client)
    resp = client.post(
        "/settings/users",
        data={"csrf_token": token, "name": "x", "role": "admin", "password": "password-1"},
    )
    assert resp.status_code == 403
    assert b"Settings" not in client.get("/").data.split(b"<main>")[0]


def test_admin_adds_user_and_changes_settings_with_audit(app, sample_db):
    client = app.test_client()
    assert login(client, ADM, ADM_PW).status_code == 302
    html = client.get("/settings").get_data(as_text=True)
    assert "Audit log" in html and "login_ok" in html and "sentiment_declining" in html
    token = csrf_from(html)
    resp = client.post(
        "/settings/users",
        data={
            "csrf_token": token,
            "name": "carol",
            "role": "supervisor",
            "password": "carol-password",
        },
    )
    assert resp.status_code == 302
    resp = client.post(
        "/settings/retention",
        data={
            "csrf_token": token,
            "transcripts_days": "3",
            "scores_days": "365",
            "outbox_sent_days": "7",
            "alerts_days": "180",
            "min_free_mb": "200",
        },
    )
    assert resp.status_code == 302
    bad = client.post(
        "/settings/mqtt",
        data={"csrf_token": token, "url": "http://nope", "prefix": "cc", "keepalive": "30"},
    )
    assert bad.status_code == 302
    html = client.get("/settings").get_data(as_text=True)
    assert "carol" in html
    db = users.open_db(sample_db[0])
    try:
        stored = json.loads(
            db.execute("SELECT value FROM settings WHERE key = 'retention'").fetchone()[0]
        )
        assert stored["transcripts_days"] == 3.0
        assert db.execute("SELECT 1 FROM settings WHERE key = 'mqtt'").fetchone() is None
        audit = users.recent_audit(db, 10)
    finally:
        db.conn.close()
    changes = [a for a in audit if a["action"] == "setting_change"]
    assert changes[0]["ok"] == 0 and "mqtt.url" in changes[0]["detail"]["error"]
    assert changes[1]["ok"] == 1 and changes[1]["detail"]["changes"]["transcripts_days"] == [
        7.0,
        3.0,
    ]
    assert any(a["action"] == "user_add" and a["detail"].get("name") == "carol" for a in audit)
    new = app.test_client()
    assert login(new, "carol", "carol-password").status_code == 302


# -- pages and API -------------------------------------------------------------------------


def test_pages_render_for_a_supervisor(app, sample_db):
    client = app.test_client()
    login(client)
    for path in (
        "/",
        "/calls",
        "/calls?alert=yes&position=pos-1",
        "/calls?from=2020-01-01T00:00",
        "/customers",
        "/customers/CRM-1001",
        "/alerts",
        "/alerts?state=all&severity=warning",
        "/health",
    ):
        resp = client.get(path)
        assert resp.status_code == 200, path
        assert b"Sign out" in resp.data
    upset = sample_db[1]["CRM-1001"][-1]
    html = client.get(f"/calls/{upset}").get_data(as_text=True)
    assert html.count('<tr class="customer"') >= 5 and "nobody ever calls me back" in html
    assert 'id="va-chart"' in html and 'class="timeline"' in html
    assert "escalation_phrase" in html or "sentiment_declining" in html
    assert client.get("/calls/nope").status_code == 404
    assert client.get("/customers/nope").status_code == 404
    assert client.get("/calls?from=yesterday").status_code == 200  # bad filter: message, not 500


def test_api_documents(app, sample_db):
    client = app.test_client()
    login(client)
    live = client.get("/api/positions/live").get_json()
    by_pos = {p["position"]: p for p in live["positions"]}
    assert by_pos["pos-2"]["state"] == "on_call" and by_pos["pos-2"]["trajectory"]
    assert by_pos["pos-3"]["state"] == "idle"
    calls = client.get("/api/calls?alert=yes").get_json()
    assert calls["total"] >= 1 and all(c["alerts"] > 0 for c in calls["items"])
    assert client.get("/api/calls?position=pos-3").get_json()["total"] == 2
    assert client.get("/api/calls?customer=2002").get_json()["total"] == 3
    assert client.get("/api/calls?from=9999999999").get_json()["total"] == 0
    assert client.get("/api/calls?limit=0").status_code == 400
    assert client.get("/api/calls?from=nan").status_code == 400
    detail = client.get(f"/api/calls/{sample_db[1]['CRM-1001'][-1]}").get_json()
    assert detail["utterances"] and detail["alerts"] and "talk_listen_ratio" in detail["metrics"]
    cust = client.get("/api/customers/CRM-1001").get_json()
    assert cust["state"] == "at_risk" and len(cust["history"]) == 4
    assert client.get("/api/health").get_json()["outbox"]["pending"] > 0
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.") and "/api/positions/live" in spec["paths"]
    documented = {p.replace("{", "<").replace("}", ">") for p in spec["paths"]}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            assert rule.rule in documented, rule.rule


def test_health_page_without_and_with_daemon_snapshot(tmp_path):
    db_path = tmp_path / "h.db"
    app = create_app({"DB_PATH": str(db_path), "SECRET_KEY": "k"})
    db = users.open_db(db_path)
    users.add_user(db, SUP, "supervisor", SUP_PW)
    client = app.test_client()
    login(client)
    html = client.get("/health").get_data(as_text=True)
    assert "No data from the daemon yet" in html and "no data" in html
    assert client.get("/").status_code == 200  # empty database: Live still renders
    from appliance.store import settings
    from appliance.store.connection import immediate

    # the shape appliance.ops.health writes (settings key `health`)
    snap = {
        "ts": time.time(),
        "box_id": "b",
        "uptime_s": 3725.0,
        "cpu_percent": 37.5,
        "load1": 0.4,
        "temperature_c": 51.2,
        "rtf": 0.21,
        "queue_depth": 3,
        "overruns": 0,
        "latency_p95_s": 0.42,
        "outbox_pending": 0,
        "disk_free_mb": 20480.0,
        "broker_connected": True,
        "mqtt_enabled": True,
        "active_calls": 1,
        "alarms": ["overrun"],
        "streams": [
            {
                "position": "pos-1",
                "device": "hw:1",
                "connected": True,
                "in_call": True,
                "calls": 4,
                "rtf": 0.01,
                "overruns": 0,
                "error": None,
            }
        ],
        "emotion_model": {"name": "m", "version": "1"},
    }
    with immediate(db):
        settings.put_json(db, settings.HEALTH, snap)
    db.conn.close()
    html = client.get("/health").get_data(as_text=True)
    for text in (
        "38%",
        "51.2 °C",
        "0.210",
        "connected",
        "queue_depth",
        "0.42 s",
        "1:02:05",
        "hw:1",
        "overrun",
    ):
        assert text in html, text


def test_metrics_needs_the_bearer_token(app, monkeypatch):
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    resp = client.get("/metrics", headers={"Authorization": "Bearer metrics-token-xyz"})
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    text = resp.get_data(as_text=True)
    for name in (
        "appliance_calls",
        "appliance_utterances",
        "appliance_outbox_pending",
        "appliance_alerts_unacknowledged",
    ):
        assert re.search(rf"^{name} \d+$", text, re.M), name
    assert "# TYPE appliance_calls gauge" in text


def test_metrics_token_from_env_file(sample_db, tmp_path, monkeypatch):
    tok = tmp_path / "token"
    tok.write_text("file-token\n")
    monkeypatch.setenv("APPLIANCE_METRICS_TOKEN_FILE", str(tok))
    app = create_app({"DB_PATH": str(sample_db[0]), "SECRET_KEY": "k"})
    assert (
        app.test_client()
        .get("/metrics", headers={"Authorization": "Bearer file-token"})
        .status_code
        == 200
    )


def test_event_stream_reports_a_new_score_within_a_second(sample_db):
    app = create_app({"DB_PATH": str(sample_db[0]), "SECRET_KEY": "k", "SSE_MAX_S": 20.0})
    client = app.test_client()
    login(client)
    resp = client.get("/api/stream", buffered=False)
    assert resp.mimetype == "text/event-stream"
    chunks = iter(resp.response)
    events: list[tuple[float, dict]] = []

    def reader():
        buf = ""
        for chunk in chunks:
            buf += chunk.decode() if isinstance(chunk, bytes) else chunk
            while "\n\n" in buf:
                block, buf = buf.split("\n\n", 1)
                if block.startswith("event: live"):
                    data = block.split("data: ", 1)[1]
                    events.append((time.monotonic(), json.loads(data)))
            if len(events) >= 2:
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while not events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events, "no initial live event"
    from appliance.store.writer import Store

    store = Store(sample_db[0])
    try:
        call_id = store.db.execute("SELECT id FROM calls WHERE state = 'live'").fetchone()[0]
        idx = store.db.execute(
            "SELECT MAX(idx) + 1 FROM utterances WHERE call_id = ?", [call_id]
        ).fetchone()[0]
        written = time.monotonic()
        store.write_utterance(
            {
                "call_id": call_id,
                "idx": idx,
                "speaker": "customer",
                "start": 60.0,
                "end": 62.0,
                "emotion_label": "angry",
                "confidence": 0.9,
                "sentiment": -0.8,
                "created_at": time.time(),
            },
            None,
            [],
        )
    finally:
        store.close()
    t.join(5)
    resp.close()
    assert len(events) >= 2, "no live event after the new utterance"
    at, snap = events[1]
    assert at - written < 1.0
    pos2 = next(p for p in snap["positions"] if p["position"] == "pos-2")
    assert pos2["emotion"]["label"] == "angry"


# -- CLI: user add, demo user, web with TLS, wsgi ------------------------------------------


def run_cli(*args, stdin=""):
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_user_add_cli_then_form_login(tmp_path):
    db = tmp_path / "u.db"
    r = run_cli(
        "user",
        "add",
        "alice",
        "--role",
        "supervisor",
        "--password-stdin",
        "--db",
        str(db),
        stdin="alice-secret-1\n",
    )
    assert r.returncode == 0, r.stderr
    assert (
        run_cli(
            "user",
            "add",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
            "--db",
            str(db),
            stdin="another-pw-1\n",
        ).returncode
        == 1
    )
    assert (
        run_cli(
            "user",
            "add",
            "bob",
            "--role",
            "supervisor",
            "--password-stdin",
            "--db",
            str(db),
            stdin="short\n",
        ).returncode
        == 2
    )
    conn = users.open_db(db)
    row = conn.execute(
        "SELECT role, password_hash FROM panel_users WHERE name = 'alice'"
    ).fetchone()
    conn.close()
    assert row[0] == "supervisor" and row[1].startswith("$argon2id$")
    client = create_app({"DB_PATH": str(db), "SECRET_KEY": "k"}).test_client()
    assert login(client, "alice", "alice-secret-1").status_code == 302


def test_outdated_hash_is_rehashed_on_login(tmp_path):
    from argon2 import PasswordHasher

    db = users.open_db(tmp_path / "r.db")
    users.add_user(db, "old", "supervisor", "old-password")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("old-password")
    db.execute("UPDATE panel_users SET password_hash = ? WHERE name = 'old'", [weak])
    assert users.authenticate(db, "old", "old-password") is not None
    new = db.execute("SELECT password_hash FROM panel_users WHERE name = 'old'").fetchone()[0]
    db.conn.close()
    assert new != weak and "m=65536" in new


def test_demo_user(tmp_path, capsys):
    db = tmp_path / "d.db"
    name, password = ensure_demo_user(db)
    client = create_app({"DB_PATH": str(db), "SECRET_KEY": "k"}).test_client()
    assert login(client, name, password).status_code == 302
    create_app({"DB_PATH": str(db), "DEMO": True, "SECRET_KEY": "k"})
    err = capsys.readouterr().err
    pw = re.search(r"password '([^']+)'", err).group(1)
    assert (
        pw != password
        and login(
            create_app({"DB_PATH": str(db), "SECRET_KEY": "k"}).test_client(), "demo", pw
        ).status_code
        == 302
    )


def test_self_signed_certificate_has_subject_alt_names(tmp_path):
    from cryptography import x509

    from appliance.panel.tls import make_self_signed

    cert, key = make_self_signed(
        tmp_path / "c.pem", tmp_path / "k.pem", hostnames=["panel.local"], ips=["10.0.0.5"]
    )
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "panel.local"} <= set(san.get_values_for_type(x509.DNSName))
    assert {"127.0.0.1", "10.0.0.5"} <= {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    assert oct(key.stat().st_mode & 0o777) == "0o600"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_web_serves_tls_with_gunicorn(sample_db, tmp_path):
    import ssl
    import urllib.request

    port = _free_port()
    env = {**os.environ, "APPLIANCE_PANEL_SECRET_FILE": str(tmp_path / "secret")}
    from appliance.panel.tls import make_self_signed

    make_self_signed(tmp_path / "c.pem", tmp_path / "k.pem")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance.cli",
            "web",
            "--db",
            str(sample_db[0]),
            "--port",
            str(port),
            "--cert",
            str(tmp_path / "c.pem"),
            "--key",
            str(tmp_path / "k.pem"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        ctx = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(
                    f"https://localhost:{port}/login", context=ctx, timeout=2
                ) as r:
                    body, headers = r.read(), r.headers
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        assert b"csrf_token" in body
        cookie = headers["Set-Cookie"]
        assert cookie.startswith("__Host-panel=") and "Secure" in cookie
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_wsgi_entry_reads_the_environment(sample_db, monkeypatch, tmp_path):
    import importlib

    monkeypatch.setenv("APPLIANCE_DB", str(sample_db[0]))
    monkeypatch.setenv("APPLIANCE_PANEL_SECRET_FILE", str(tmp_path / "secret"))
    import appliance.panel.wsgi as wsgi

    wsgi = importlib.reload(wsgi)
    assert wsgi.app.config["DB_PATH"] == str(sample_db[0])
    assert wsgi.app.config["SESSION_COOKIE_SECURE"] is True
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600


def test_live_call_replayed_through_the_pipeline_shows_as_on_call(tmp_path):
    db = tmp_path / "p.db"
    cid = replay_call(
        db, "upset", CallMeta(position="pos-9", customer_ref="CRM-9"), leave_open=True
    )
    app = create_app({"DB_PATH": str(db), "SECRET_KEY": "k", "POSITIONS": ["pos-8", "pos-9"]})
    u = users.open_db(db)
    users.add_user(u, SUP, "supervisor", SUP_PW)
    u.conn.close()
    client = app.test_client()
    login(client)
    live = client.get("/api/positions/live").get_json()
    assert [p["position"] for p in live["positions"]] == ["pos-8", "pos-9"]
    pos9 = live["positions"][1]
    assert (
        pos9["state"] == "on_call"
        and pos9["call"]["id"] == cid
        and pos9["sentiment_class"] == "neg"
    )
    assert pos9["alerts"], "the upset script raises alerts while the call is live"
