"""The JSON API against its OpenAPI document (schemathesis), as a logged-in supervisor."""

from __future__ import annotations

import json
import re
import threading

import pytest

schemathesis = pytest.importorskip("schemathesis")
requests = pytest.importorskip("requests")

from hypothesis import HealthCheck, settings  # noqa: E402
from support.sample import fill_sample  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from appliance.panel import create_app, users  # noqa: E402
from appliance.panel.api import OPENAPI_PATH  # noqa: E402

SPEC = json.loads(OPENAPI_PATH.read_text())
# Authentication is the route-map test's job (test_panel.py: every route refuses anonymous
# requests); here a logged-in session carries the cookie and the CSRF header, and schemathesis
# checks the data contract: parameters, status codes, response schemas.
SPEC.pop("security")
for item in SPEC["paths"].values():
    for op in item.values():
        op.pop("security", None)
schema = schemathesis.openapi.from_dict(SPEC).exclude(
    path="/api/stream"  # an endless event stream: covered by test_panel's SSE test
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = tmp_path_factory.mktemp("schema") / "panel.db"
    fill_sample(db)
    u = users.open_db(db)
    users.add_user(u, "sup", "supervisor", "supervisor-pw-1")
    u.conn.close()
    app = create_app({"DB_PATH": str(db), "SECRET_KEY": "schema-test"})
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{srv.server_port}"
    session = requests.Session()
    html = session.get(base + "/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    r = session.post(
        base + "/login",
        data={"username": "sup", "password": "supervisor-pw-1", "csrf_token": token},
        allow_redirects=False,
    )
    assert r.status_code == 302
    page = session.get(base + "/").text
    session.headers["X-CSRFToken"] = re.search(r'name="csrf-token" content="([^"]+)"', page).group(
        1
    )
    yield base, session
    session.close()
    srv.shutdown()


@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api_conforms_to_openapi(case, server):
    base, session = server
    case.call_and_validate(base_url=base, session=session)
