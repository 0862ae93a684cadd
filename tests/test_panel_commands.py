"""Calls started and ended from the panel reach the daemon's command poller."""

from test_panel import SUP, app, login, page_token, sample_db  # noqa: F401  (fixtures)

from appliance.publish.commands import CommandRouter, PanelCommandReader


def test_panel_call_command_reaches_the_daemon(app, sample_db):  # noqa: F811
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
        r = client.post(
            "/api/positions/pos-7/call",
            json={"action": "start", "customer": "CRM-9", "call_type": "sales"},
            headers={"X-CSRFToken": token},
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
        r = client.post(
            "/api/positions/pos-7/call", json={"action": "end"}, headers={"X-CSRFToken": token}
        )
        assert r.status_code == 202
        assert [c["action"] for c in poll()] == ["end"]
    finally:
        poller.close()


def test_panel_call_command_validation_and_csrf(app):  # noqa: F811
    client = app.test_client()
    login(client)
    token = page_token(client)
    assert (
        client.post("/api/positions/pos-7/call", json={"action": "start"}).status_code == 400
    )  # no CSRF header
    bad = client.post(
        "/api/positions/pos-7/call", json={"action": "explode"}, headers={"X-CSRFToken": token}
    )
    assert bad.status_code == 400 and "action" in bad.get_json()["error"]
    long_ref = client.post(
        "/api/positions/pos-7/call", json={"customer": "x" * 200}, headers={"X-CSRFToken": token}
    )
    assert long_ref.status_code == 400
    anon = app.test_client().post("/api/positions/pos-7/call", json={"action": "start"})
    assert anon.status_code in (302, 400, 401, 403)
    assert SUP
