"""Server-side sessions: a copied cookie dies with logout (also across a panel restart), idle
timeout and absolute lifetime, disable / delete / new password end a user's sessions at once
(from the CLI and from an admin on the panel), and an open live stream ends with them."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import sys
import threading
import time

import pytest
from support.panel import ADM, ADM_PW, SUP, SUP_PW, PanelServer, logged_in, users_db
from support.panel import form_token as csrf_from

from appliance.cli import main
from appliance.panel import create_app, users
from appliance.store.connection import connect


@pytest.fixture
def db(tmp_path):
    return users_db(tmp_path / "panel.db")


def make_app(db, **cfg):
    return create_app({"DB_PATH": str(db), "SECRET_KEY": "k", "POSITIONS": ["pos-1"], **cfg})


def login(client, name=SUP, pw=SUP_PW):
    return logged_in(client.application, name, pw)


def cookie(client, app) -> str:
    return client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value


def with_cookie(app, value: str):
    c = app.test_client()
    c.set_cookie(app.config["SESSION_COOKIE_NAME"], value)
    return c


def me(client) -> int:
    return client.get("/api/me").status_code


def post_form(client, path: str, **data):
    token = csrf_from(
        client.get("/settings" if path.startswith("/settings") else "/").get_data(as_text=True)
    )
    return client.post(path, data={"csrf_token": token, **data})


def logout(client, everywhere: bool = False):
    token = csrf_from(client.get("/logout").get_data(as_text=True))
    data = {"csrf_token": token, **({"everywhere": "1"} if everywhere else {})}
    return client.post("/logout", data=data)


def cli(*args, stdin: str = "") -> subprocess.CompletedProcess:
    """`appliance user ...` in this process (the entry point itself: test_cli_entry_point)."""
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["user", *args])
    finally:
        sys.stdin = old
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def test_cli_entry_point(db):
    r = subprocess.run([sys.executable, "-m", "appliance.cli", "user", "passwd", SUP,
                        "--password-stdin", "--db", str(db)],
                       input="via-the-entry-point\n", capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    login(make_app(db).test_client(), SUP, "via-the-entry-point")


def test_a_copied_cookie_dies_with_logout_also_after_a_restart(db):
    app = make_app(db)
    client = login(app.test_client())
    copied = cookie(client, app)
    assert me(with_cookie(app, copied)) == 200  # a copy works while the session lives
    # the server keeps a hash of the token, never the token
    token = app.session_interface.get_signing_serializer(app).loads(copied)["sid"]
    d = connect(db)
    ids = [r[0] for r in d.execute("SELECT id FROM panel_sessions")]
    d.conn.close()
    assert hashlib.sha256(token.encode()).hexdigest() in ids and token not in ids
    assert me(with_cookie(make_app(db), copied)) == 200  # a restarted panel knows it too
    assert logout(client).status_code == 302
    assert me(with_cookie(app, copied)) == 401
    assert me(with_cookie(make_app(db), copied)) == 401  # and after a panel restart


def test_idle_timeout_and_activity(db):
    app = make_app(db, SESSION_IDLE_S=1.0)
    active = login(app.test_client())
    idle = login(app.test_client())
    for _ in range(5):  # 2.5 s of use, never 1 s apart
        assert me(active) == 200
        time.sleep(0.5)
    assert me(idle) == 401  # unused for 2.5 s
    assert me(active) == 200


def test_absolute_lifetime_is_not_extended_by_use(db):
    app = make_app(db, SESSION_MAX_S=2.0)
    client = login(app.test_client())
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.5:
        r = client.get("/api/me")
        assert r.status_code == 200 and "Set-Cookie" not in r.headers  # expiry fixed at login
        time.sleep(0.3)
    time.sleep(0.7)
    assert me(client) == 401


def test_logout_everywhere_ends_every_session_of_the_user(db):
    app = make_app(db)
    a, b, other = (
        login(app.test_client()),
        login(app.test_client()),
        login(app.test_client(), ADM, ADM_PW),
    )
    assert logout(a, everywhere=True).status_code == 302
    assert me(b) == 401 and me(other) == 200
    audit = users.recent_audit(users.open_db(db), 5)
    assert any(x["action"] == "logout" and x["detail"].get("sessions_ended") == 2 for x in audit)


def test_cli_disable_enable_passwd_delete_end_sessions_at_once(db):
    app = make_app(db)
    client = login(app.test_client())
    r = cli("disable", SUP, "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert me(client) == 401
    assert app.test_client().get("/login").status_code == 200
    listing = json.loads(cli("list", "--json", "--db", str(db)).stdout)
    assert {u["name"]: u["disabled"] for u in listing} == {ADM: 0, SUP: 1}
    assert cli("enable", SUP, "--db", str(db)).returncode == 0
    client = login(app.test_client())
    r = cli("passwd", SUP, "--password-stdin", "--db", str(db), stdin="a-new-password-9\n")
    assert r.returncode == 0, r.stderr
    assert me(client) == 401
    client = login(app.test_client(), SUP, "a-new-password-9")
    assert cli("delete", SUP, "--db", str(db)).returncode == 0
    assert me(client) == 401
    assert cli("delete", SUP, "--db", str(db)).returncode == 1  # no such user
    assert cli("disable", ADM, "--db", str(db)).returncode == 1  # the last admin stays
    short = cli("passwd", ADM, "--password-stdin", "--db", str(db), stdin="short\n")
    assert short.returncode == 2 and "8 characters" in short.stderr
    actions = [a["action"] for a in users.recent_audit(users.open_db(db), 20) if a["user"] == "cli"]
    assert {"user_disable", "user_enable", "user_passwd", "user_delete"} <= set(actions)


def test_admin_buttons_end_sessions_at_once(db):
    app = make_app(db)
    sup = login(app.test_client())
    adm = login(app.test_client(), ADM, ADM_PW)
    html = adm.get("/settings").get_data(as_text=True)
    assert f'data-user="{SUP}"' in html and "Disable" in html and "Set password" in html
    assert post_form(adm, f"/settings/users/{SUP}/disable").status_code == 302
    assert me(sup) == 401
    assert "disabled" in adm.get("/settings").get_data(as_text=True)
    assert post_form(adm, f"/settings/users/{SUP}/enable").status_code == 302
    sup = login(app.test_client())
    assert (
        post_form(adm, f"/settings/users/{SUP}/password", password="new-password-42").status_code
        == 302
    )
    assert me(sup) == 401
    sup = login(app.test_client(), SUP, "new-password-42")
    assert post_form(adm, f"/settings/users/{SUP}/delete").status_code == 302
    assert me(sup) == 401
    # the last admin cannot lock everybody out; a supervisor cannot use the buttons at all
    post_form(adm, f"/settings/users/{ADM}/disable")
    assert me(adm) == 200
    assert users.list_users(users.open_db(db))[0]["disabled"] == 0
    d = users.open_db(db)
    users.add_user(d, SUP, "supervisor", SUP_PW)
    d.conn.close()
    sup = login(app.test_client())
    assert post_form(sup, f"/settings/users/{ADM}/disable").status_code == 403
    audit = users.recent_audit(users.open_db(db), 20)
    failed = [a for a in audit if a["action"] == "user_disable" and not a["ok"]]
    assert failed and "only enabled admin" in failed[0]["detail"]["error"]


def test_an_open_live_stream_ends_when_the_user_is_disabled(db):
    app = make_app(db, SSE_KEEPALIVE_S=0.2, SSE_MAX_S=30.0)
    sup = login(app.test_client())
    resp = sup.get("/api/stream", buffered=False)
    assert resp.status_code == 200
    events: list[tuple[float, str]] = []

    def read():
        for chunk in resp.response:
            text = chunk.decode() if isinstance(chunk, bytes) else chunk
            for block in text.split("\n\n"):
                if block.startswith("event: "):
                    events.append((time.monotonic(), block.split("\n")[0][7:]))
                    if block.startswith("event: logout"):
                        return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    time.sleep(0.5)
    assert cli("disable", SUP, "--db", str(db)).returncode == 0
    disabled = time.monotonic()
    t.join(10)
    resp.close()
    assert events and events[-1][1] == "logout", events
    assert events[-1][0] - disabled < 1.0


@pytest.mark.slow
def test_logout_on_the_real_server_survives_its_restart(db, tmp_path):
    with PanelServer(tmp_path / "srv", db) as server:
        s = server.session(SUP, SUP_PW)
        jar = s.cookies.copy()
        assert s.get(server.url + "/api/me").status_code == 200
        server.restart()
        assert s.get(server.url + "/api/me").status_code == 200  # sessions survive a restart
        token = server.csrf(s)
        assert (
            s.post(
                server.url + "/logout", data={"csrf_token": token}, allow_redirects=False
            ).status_code
            == 302
        )
        server.restart()
        import requests

        copied = requests.Session()
        copied.verify, copied.trust_env, copied.cookies = str(server.cert), False, jar
        assert copied.get(server.url + "/api/me").status_code == 401
