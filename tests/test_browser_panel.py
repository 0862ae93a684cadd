"""End to end in headless Chromium: log in through the form, replay a call through the pipeline
while the Live page is open, watch it update by server-sent events, open the call detail.

With the trained model in models/emotion/ the call is the bundled demo call through the real
engines (appliance.ops.engines.load_engines: emotion model + STT, as `appliance analyze` uses);
without it, a scripted call through the same pipeline (appliance.panel.sample).
Screenshots go to a tmp dir (and to $PANEL_SCREENSHOT_DIR when set).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
MODEL_CARD = ROOT / "models" / "emotion" / "model_card.json"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no /usr/bin/chromium"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

USER, PASSWORD = "supervisor1", "a-long-supervisor-password"


def _q(db: Path, sql: str, args=()):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def add_supervisor(db) -> None:
    """The supervisor the browser logs in as, made the way an installer would: `appliance user add`."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance.cli",
            "user",
            "add",
            USER,
            "--role",
            "supervisor",
            "--password-stdin",
            "--db",
            str(db),
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr


@pytest.fixture
def panel(tmp_path):
    """A fresh database, a supervisor made with `appliance user add`, the panel on loopback."""
    from werkzeug.serving import make_server

    from appliance.panel import create_app

    db = tmp_path / "panel.db"
    add_supervisor(db)
    app = create_app({"DB_PATH": str(db), "POSITIONS": ["pos-1", "pos-2"]})
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield db, f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


@pytest.fixture
def browser(tmp_path):
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path):
    d = tmp_path / "screenshots"
    d.mkdir()
    yield d
    extra = os.environ.get("PANEL_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        for f in d.iterdir():
            shutil.copy(f, Path(extra) / f.name)


def shot(page, shots: Path, name: str) -> Path:
    path = shots / f"{name}.png"
    page.evaluate(
        "window.scrollTo(0, 0)"
    )  # the sticky top bar stays at the top of a full-page shot
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 15_000, f"{name}: suspiciously small screenshot"
    return path


def replayer(db: Path):
    """(thread target, description): the real demo call when the model exists, else a script."""
    from appliance.pipeline.call import CallMeta

    if MODEL_CARD.exists():
        from appliance.capture.wav import read_wav
        from appliance.ops.analysis import Session
        from appliance.ops.demo import demo_calls, demo_config
        from appliance.ops.engines import load_engines

        call = demo_calls()[0]
        cfg = demo_config(db)
        engines = load_engines(cfg)  # before the clock starts: model load + warm-up
        rec = read_wav(call.wav)

        def run():
            session = Session(cfg, db, engines)
            try:
                session.replay(rec, call.speakers, call.meta, speed=4.0, source="demo")
            finally:
                session.close(flush_timeout=0.1)

        return run, call.meta.position, "real engines, bundled demo call"

    from support.sample import replay_call

    meta = CallMeta(
        position="pos-1", customer_ref="CRM-000123", call_type="support", segment="retail"
    )

    def run():
        replay_call(db, "upset", meta, speed=1.5, overtalk_at=7)

    return run, "pos-1", "scripted stand-in engines (no trained model yet)"


def test_login_replay_live_updates_and_call_detail(panel, browser, shots):
    db, base = panel
    run, position, what = replayer(db)
    print(f"replaying with {what}")
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    # not logged in: every page sends the browser to the login form
    page.goto(base + "/calls")
    assert "/login" in page.url
    page.fill("#username", USER)
    page.fill("#password", "wrong-password")
    page.click("button[type=submit]")
    assert "Wrong user name or password" in page.inner_text(".flash.error")
    shot(page, shots, "01_login_failed")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/calls")
    assert any("401" in p for p in problems)  # the refused login page itself
    problems.clear()
    page.goto(base + "/")
    page.wait_for_selector("#live-status.connected", timeout=10_000)
    page.wait_for_selector(f'.pos-card[data-position="{position}"][data-state="idle"]')
    shot(page, shots, "02_live_idle")

    t = threading.Thread(target=run, name="replay", daemon=True)
    t.start()
    card = f'.pos-card[data-position="{position}"]'
    page.wait_for_selector(f'{card}[data-state="on_call"]', timeout=30_000)

    # latency: a new utterance row in the database -> the Live page re-rendered
    latencies = []
    for _ in range(3):
        before = page.evaluate("Number(document.getElementById('positions').dataset.updates)")
        n0 = _q(db, "SELECT COALESCE(MAX(id), 0) FROM utterances")[0][0]
        deadline = time.monotonic() + 30
        while _q(db, "SELECT COALESCE(MAX(id), 0) FROM utterances")[0][0] == n0:
            assert time.monotonic() < deadline, "no new utterance"
            time.sleep(0.02)
        t_db = time.monotonic()
        page.wait_for_function(
            f"() => Number(document.getElementById('positions').dataset.updates) > {before}",
            timeout=3000,
        )
        latencies.append(time.monotonic() - t_db)
    print("live latency (s):", [round(x, 3) for x in latencies])
    assert max(latencies) < 1.0, latencies

    page.wait_for_function(
        f"() => !!document.querySelector('{card} .emotion') && document.querySelector('{card} .emotion').textContent.trim() !== '–'",
        timeout=30_000,
    )
    page.wait_for_selector(f"{card} svg.spark polyline", timeout=30_000)  # 2+ scored utterances
    shot(page, shots, "03_live_on_call")
    try:  # an alert while the call is still live (the scripted call always raises some)
        page.wait_for_selector(
            f'{card}[data-state="on_call"] .pos-alerts .alert-line', timeout=40_000
        )
        shot(page, shots, "03b_live_alert_during_call")
    except sync_api.TimeoutError:
        if not MODEL_CARD.exists():
            raise

    t.join(180)
    assert not t.is_alive(), "replay did not finish"
    page.wait_for_selector(f'{card}[data-state="idle"]', timeout=10_000)
    call_id, n_alerts = _q(db, "SELECT id, alerts FROM calls ORDER BY started_at DESC LIMIT 1")[0]
    db_alerts = _q(db, "SELECT id, reason FROM alerts WHERE call_id = ?", [call_id])
    if db_alerts:
        page.wait_for_selector("#alert-feed .alert-line")
        feed = page.inner_text("#alert-feed")
        assert any(r[1][:30] in feed for r in db_alerts)
    shot(page, shots, "04_live_after_call")

    # the call detail: chart, talk timeline, transcript rows, alerts
    page.click(f"{card} a.call-link")
    page.wait_for_url(f"{base}/calls/{call_id}")
    page.wait_for_selector("#va-chart canvas", timeout=10_000)
    page.wait_for_selector("#va-chart[data-ready='1']")
    n_utts = _q(db, "SELECT COUNT(*) FROM utterances WHERE call_id = ?", [call_id])[0][0]
    assert page.locator("#transcript tbody tr").count() == n_utts >= 5
    assert page.locator("#transcript tbody tr.customer").count() >= 3
    assert page.locator("svg.timeline rect.lane-customer").count() >= 3
    if MODEL_CARD.exists():
        assert (
            _q(db, "SELECT COUNT(*) FROM transcripts WHERE call_id = ? AND text != ''", [call_id])[
                0
            ][0]
            > 0
        )
    else:
        assert "nobody ever calls me back" in page.inner_text("#transcript")
    assert page.locator("#call-alerts .alert-line").count() == len(db_alerts)
    if not MODEL_CARD.exists():
        assert db_alerts, "the scripted upset call raises alerts"
    page.hover("#transcript tbody tr.customer >> nth=2")
    assert page.locator("#transcript tr.hl").count() == 1
    shot(page, shots, "05_call_detail")

    for name, path in (
        ("06_calls", "/calls"),
        ("07_customers", "/customers"),
        ("08_alerts", "/alerts"),
        ("09_health", "/health"),
    ):
        page.goto(base + path)
        page.wait_for_load_state("networkidle")
        shot(page, shots, name)
    assert page.locator("text=no data").count() >= 1  # no daemon snapshot in this database

    # acknowledge an alert from the inbox (form POST with its CSRF token)
    if db_alerts:
        page.goto(base + "/alerts")
        page.click("#alerts-table button:has-text('Acknowledge') >> nth=0")
        page.wait_for_load_state("networkidle")
        acked = _q(db, "SELECT acknowledged_by FROM alerts WHERE acknowledged_at IS NOT NULL")
        assert acked and acked[0][0] == USER

    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    assert not problems, problems
    print("screenshots:", sorted(f.name for f in shots.iterdir()))
    assert json.dumps(sorted(f.name for f in shots.iterdir()))


@pytest.mark.slow
@pytest.mark.skipif(not MODEL_CARD.exists(), reason="no trained emotion model in models/emotion/")
def test_pages_on_a_database_filled_by_analyze(tmp_path, browser, shots):
    """The issue's acceptance path: `appliance analyze` fills the database, `appliance user add`
    makes the supervisor, who logs in through the form and sees every page."""
    from werkzeug.serving import make_server

    from appliance.panel import create_app

    db = tmp_path / "analyzed.db"
    wav = ROOT / "appliance" / "data" / "demo_call.wav"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance.cli",
            "analyze",
            str(wav),
            "--db",
            str(db),
            "--customer",
            "CRM-1",
            "--segment",
            "retail",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    add_supervisor(db)
    srv = make_server("127.0.0.1", 0, create_app({"DB_PATH": str(db)}), threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_port}"
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(base + "/")
        page.fill("#username", USER)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")
        page.wait_for_selector('.pos-card[data-position="pos-1"][data-state="idle"]')
        call_id = result["call"]["id"]
        page.goto(f"{base}/calls/{call_id}")
        page.wait_for_selector("#va-chart[data-ready='1'] canvas")
        assert page.locator("#transcript tbody tr").count() == len(result["utterances"])
        assert page.locator("#call-alerts .alert-line").count() == len(result["alerts"])
        shot(page, shots, "10_analyzed_call_detail")
        page.goto(base + "/customers/CRM-1")
        page.wait_for_selector("#trend-chart[data-ready='1'] canvas")
        for path in ("/", "/calls", "/customers", "/alerts", "/health"):
            page.goto(base + path)
            assert page.locator("h1").first.is_visible(), path
            assert "/login" not in page.url
        assert not problems, problems
    finally:
        srv.shutdown()
