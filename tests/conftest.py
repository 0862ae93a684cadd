"""Shared fixtures: real SQLite files, a real mosquitto, the shared data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MODEL_CARD = ROOT / "models" / "emotion" / "model_card.json"

needs_shared = pytest.mark.skipif(
    not SHARED.exists(), reason="../shared/data is not present (fresh clone)"
)
needs_model = pytest.mark.skipif(
    not MODEL_CARD.exists(), reason="no trained emotion model in models/emotion/"
)


@pytest.fixture
def fresh_db(tmp_path):
    """A migrated Store on a new database file."""
    from appliance.store.writer import Store

    store = Store(tmp_path / "test.db", box_id="test-box")
    yield store
    store.close()


@pytest.fixture
def broker(tmp_path):
    """A real mosquitto on a free loopback port."""
    from appliance.publish.broker import LocalBroker, find_mosquitto

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    b = LocalBroker(workdir=tmp_path / "broker").start()
    yield b
    b.close()


@pytest.fixture
def collector(broker):
    from support.mqtt import Collector

    c = Collector(broker.url)
    yield c
    c.close()


@pytest.fixture(scope="session")
def pg_cluster():
    """A temporary PostgreSQL cluster for the whole session (initdb, pg_ctl; stopped at the end)."""
    pytest.importorskip("psycopg")
    from support.postgres import TempCluster, find_bindir

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (install.sh --dev installs them)")
    cluster = TempCluster(bindir).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_dsn(pg_cluster):
    """A fresh, empty PostgreSQL database in the session's cluster."""
    return pg_cluster.new_database()


@pytest.fixture(params=["sqlite", "postgres"])
def central_dsn(request, tmp_path):
    """The central database of the bridge: SQLite (one instance) and PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "central.db")
    return request.getfixturevalue("pg_dsn")


@pytest.fixture
def small_disk():
    """A real 2 MiB tmpfs the test can fill (`fill()`, `release()`); skipped without root."""
    from support.disk import SmallDisk

    try:
        disk = SmallDisk(2048)
    except OSError as exc:
        pytest.skip(str(exc))
    yield disk
    disk.close()
