"""Calls started and ended from the panel reach the daemon's command poller; only at configured
positions and only for the roles panel.call_commands allows."""

import pytest
from test_panel import ADM, ADM_PW, SUP, SUP_PW, login, page_token, sample_db  # noqa: F401  (fixtures)

from appliance.panel import create_app
from appliance.publish.commands import CommandRouter, PanelCommandReader
from appliance.store.connection import connect


def make_app(sample_db, **extra):  # noqa: F811
    config = {"DB_PATH": str(sample_db[0]), "SECRET_KEY": "k", "POSITIONS": ["pos-7"], **extra}
    return create_app(config)


def command_rows(db_path) -> int:
    db = connect(db_path)
    try:
        return db.execute("SELECT COUNT(*) FROM commands").fetchone()[0]
    finally:
        db.conn.close()


def post(client, position, body, token):
    return client.post(f"/api/positions/{position}/call", json=body, headers={"X-CSRFToken": token})


def test_panel_call_command_reaches_the_daemon(sample_db):  # noqa: F811
    app = make_app(sample_db)
    applied: list[dict] = []
    poller = PanelCommandReader(sample_db[0], CommandRouter({"pos-7": applied.append}))

    def poll() -> list[dict]:
        poller.poll()
        out = list(applied)
        applied.clear()
        return out

    try:
        assert poll() == []
        client = app.test_client()
        login(client)
        token = page_token(client)
        r = post(
            client, "pos-7", {"action": "start", "customer": "CRM-9", "call_type": "sales"}, token
        )
        assert r.status_code == 202, r.get_data(as_text=True)
        cmds = poll()
        assert len(cmds) == 1
        assert (
            cmds[0]["position"] == "pos-7"
            and cmds[0]["action"] == "start"
            and cmds[0]["customer"] == "CRM-9"
        )
        assert poll() == []  # applied once
        r = post(client, "pos-7", {"action": "end"}, token)
        assert r.status_code == 202
        assert [c["action"] for c in poll()] == ["end"]
        # the Live page offers the buttons for the configured position only
        assert 'data-commands="[&#34;pos-7&#34;]"' in client.get("/").get_data(as_text=True)
    finally:
        poller.close()


def test_panel_call_command_validation_and_csrf(sample_db):  # noqa: F811
    app = make_app(sample_db)
    client = app.test_client()
    login(client)
    token = page_token(client)
    assert (
        client.post("/api/positions/pos-7/call", json={"action": "start"}).status_code == 400
    )  # no CSRF header
    bad = post(client, "pos-7", {"action": "explode"}, token)
    assert bad.status_code == 400 and "action" in bad.get_json()["error"]
    assert post(client, "pos-7", {"customer": "x" * 200}, token).status_code == 400
    anon = app.test_client().post("/api/positions/pos-7/call", json={"action": "start"})
    assert anon.status_code in (302, 400, 401, 403)


def test_made_up_positions_are_refused_and_leave_no_row(sample_db):  # noqa: F811
    app = make_app(sample_db)
    client = app.test_client()
    login(client)
    token = page_token(client)
    before = command_rows(sample_db[0])
    made_up = "p" * 64
    r = post(client, made_up, {"action": "start"}, token)
    assert r.status_code == 404 and "configured" in r.get_json()["error"]
    assert post(client, "pos-1", {"action": "end"}, token).status_code == 404  # seen, not ours
    # a panel without the config knows no positions: nothing can be commanded
    bare = create_app({"DB_PATH": str(sample_db[0]), "SECRET_KEY": "k"})
    c2 = bare.test_client()
    login(c2)
    assert post(c2, "pos-7", {"action": "start"}, page_token(c2)).status_code == 404
    assert command_rows(sample_db[0]) == before


@pytest.mark.parametrize(
    ("setting", "supervisor", "admin"),
    [("supervisor", 202, 202), ("admin", 403, 202), ("off", 403, 403)],
)
def test_call_commands_follow_the_role_setting(sample_db, setting, supervisor, admin):  # noqa: F811
    app = make_app(sample_db, CALL_COMMANDS=setting)
    for (name, pw), expected in (((SUP, SUP_PW), supervisor), ((ADM, ADM_PW), admin)):
        client = app.test_client()
        login(client, name, pw)
        token = page_token(client)
        r = post(client, "pos-7", {"action": "update", "call_type": "sales"}, token)
        assert r.status_code == expected, (name, setting, r.get_data(as_text=True))
        live = client.get("/").get_data(as_text=True)
        offered = "&#34;pos-7&#34;" in live
        assert offered == (expected == 202)
