"""Sessions and admin controls in headless Chromium against gunicorn started as the unit starts
it (TLS, host and port from the config): an admin disabling a supervisor sends that supervisor's
open Live page to the login form within seconds, a cookie copied before logout is refused
afterwards, deleting asks first, a bad retention value is refused naming the key, and the Live
page offers call buttons for configured positions only. No console error, no CSP violation."""

from __future__ import annotations

import time

import pytest
import requests
from support.panel import ADM, ADM_PW, SUP, SUP_PW, PanelServer, users_db
from test_browser_panel import ARGS, CHROMIUM, pytestmark, sync_api  # noqa: F401  (same needs)


@pytest.fixture
def server(tmp_path):
    db = users_db(tmp_path / "panel.db")
    with PanelServer(tmp_path / "srv", db, positions=("pos-1", "pos-2")) as srv:
        yield srv


def sign_in(ctx, server: PanelServer, name: str, pw: str, problems: list[str]):
    page = ctx.new_page()
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(server.url + "/login")
    page.fill("#username", name)
    page.fill("#password", pw)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")
    return page


def cookie_works(server: PanelServer, cookies: list[dict]) -> int:
    s = requests.Session()
    s.verify, s.trust_env = str(server.cert), False
    for c in cookies:
        s.cookies.set(c["name"], c["value"])
    return s.get(server.url + "/api/me", timeout=10).status_code


def test_disable_logout_delete_and_settings_in_the_browser(server):
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            sup_ctx = b.new_context(ignore_https_errors=True)
            adm_ctx = b.new_context(ignore_https_errors=True)
            sup = sign_in(sup_ctx, server, SUP, SUP_PW, problems)
            sup.wait_for_selector("#live-status.connected", timeout=10_000)
            assert sup.locator('.pos-card[data-position="pos-1"] button.call-cmd').count() == 1
            copied = sup_ctx.cookies()
            assert any(
                c["name"] == "__Host-panel" and c["secure"] and c["httpOnly"] for c in copied
            )
            assert cookie_works(server, copied) == 200

            adm = sign_in(adm_ctx, server, ADM, ADM_PW, problems)
            adm.goto(server.url + "/settings")
            adm.click(f'tr[data-user="{SUP}"] button:has-text("Disable")')
            disabled = time.monotonic()
            sup.wait_for_url(server.url + "/login", timeout=10_000)  # the stream said logout
            print(
                f"disabled supervisor's Live page at /login after {time.monotonic() - disabled:.2f} s"
            )
            assert cookie_works(server, copied) == 401

            adm.click(f'tr[data-user="{SUP}"] button:has-text("Enable")')
            sup = sign_in(sup_ctx, server, SUP, SUP_PW, problems)
            before_logout = sup_ctx.cookies()
            sup.click("header .userbox button:has-text('Sign out')")
            sup.wait_for_url(server.url + "/login")
            assert cookie_works(server, before_logout) == 401  # the copy died with the logout

            adm.fill("#ret-transcripts_days", "nan")
            adm.click("button:has-text('Save retention')")
            assert "retention.transcripts_days" in adm.inner_text(".flash.error")

            adm.once("dialog", lambda d: d.dismiss())  # asked first: "no" keeps the user
            adm.click(f'tr[data-user="{SUP}"] button:has-text("Delete")')
            assert adm.locator(f'tr[data-user="{SUP}"]').count() == 1
            adm.once("dialog", lambda d: d.accept())
            adm.click(f'tr[data-user="{SUP}"] button:has-text("Delete")')
            adm.wait_for_selector(f'tr[data-user="{SUP}"]', state="detached")
            assert "deleted" in adm.inner_text(".flash.ok")
        finally:
            b.close()
    assert not problems, problems  # no console error, no CSP violation
