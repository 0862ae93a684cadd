"""The panel for real: gunicorn started the way the systemd unit starts it
(`gunicorn -c python:appliance.panel.gunicorn_conf 'appliance.panel.wsgi:app'`, host, port, TLS
and threads from a config file), logged-in `requests` sessions against it; and the users and
logged-in Flask test clients the panel tests share."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import requests

SUP, SUP_PW = "sup", "supervisor-pw-1"
ADM, ADM_PW = "adm", "admin-pw-12345"


def users_db(path: Path, *people: tuple[str, str, str]) -> Path:
    """A migrated database with panel users (name, role, password); default: SUP and ADM."""
    from appliance.panel import users

    d = users.open_db(path)
    try:
        for name, role, pw in people or ((SUP, "supervisor", SUP_PW), (ADM, "admin", ADM_PW)):
            users.add_user(d, name, role, pw)
    finally:
        d.conn.close()
    return path


def form_token(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html
    )
    assert m, "no CSRF token in page"
    return m.group(1)


def logged_in(app, name: str = SUP, password: str = SUP_PW):
    """A Flask test client logged in through the form."""
    client = app.test_client()
    token = form_token(client.get("/login").get_data(as_text=True))
    r = client.post("/login", data={"username": name, "password": password, "csrf_token": token})
    assert r.status_code == 302, r.get_data(as_text=True)[:300]
    return client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PanelServer:
    """gunicorn serving a database over TLS on 127.0.0.1; `panel` holds extra [panel] keys."""

    def __init__(self, folder: Path, db: Path, positions=("pos-1",), **panel):
        from appliance.panel.tls import make_self_signed

        self.folder, self.db = folder, db
        folder.mkdir(parents=True, exist_ok=True)
        self.cert, key = folder / "cert.pem", folder / "key.pem"
        if not self.cert.exists():
            make_self_signed(self.cert, key)
        self.port = free_port()
        lines = [
            "[paths]",
            f'db = "{db}"',
            "[panel]",
            'host = "127.0.0.1"',
            f"port = {self.port}",
            f'cert_file = "{self.cert}"',
            f'key_file = "{key}"',
            *(f"{k} = {v!r}".replace("'", '"') for k, v in panel.items()),
        ]
        for i, pid in enumerate(positions):
            lines += ["[[positions]]", f'id = "{pid}"', f'device = "dev{i}"']
        self.config = folder / "appliance.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = folder / "gunicorn.log"
        self.proc: subprocess.Popen | None = None

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> PanelServer:
        env = {
            **os.environ,
            "APPLIANCE_CONFIG": str(self.config),
            "APPLIANCE_PANEL_SECRET_FILE": str(self.folder / "secret.key"),
        }
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "python:appliance.panel.gunicorn_conf",
                 "appliance.panel.wsgi:app"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.folder,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(self.url + "/healthz", verify=str(self.cert), timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"panel did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # gunicorn's quick shutdown (TERM is graceful)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> PanelServer:
        self.stop()
        return self.start()

    def session(self, name: str, password: str) -> requests.Session:
        """A requests session logged in through the form (CSRF token and all)."""
        s = requests.Session()
        s.verify = str(self.cert)
        s.trust_env = False  # else $REQUESTS_CA_BUNDLE would win over `verify`
        s.headers["Referer"] = self.url + "/"  # Flask-WTF checks it under TLS, as browsers send it
        html = s.get(self.url + "/login", timeout=10).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        r = s.post(
            self.url + "/login",
            data={"username": name, "password": password, "csrf_token": token},
            allow_redirects=False,
            timeout=10,
        )
        assert r.status_code == 302, r.text[:500]
        return s

    def csrf(self, s: requests.Session, path: str = "/") -> str:
        html = s.get(self.url + path, timeout=10).text
        return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)

    def __enter__(self) -> PanelServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
