"""Read models of the panel: one function per page/API resource, plain dicts out.

Everything here reads the tables the daemon writes (see appliance/store.py); the only writes are
alert acknowledgements. Times are epoch seconds; utterance `start`/`end` and alert `at` are
seconds since the call started.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import sqlite_utils

from appliance.store import alerts as alert_rows
from appliance.store import outbox, settings

LIVE_STALE_S = 1800.0
"""A call still marked live without any new utterance for this long counts as idle (daemon gone)."""
SPARK_POINTS = 40


def _loads(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def sentiment_class(value: float | None) -> str:
    """CSS class for a sentiment value: neg (red), mid (amber), pos (green), none."""
    if value is None:
        return "none"
    if value <= -0.2:
        return "neg"
    if value >= 0.2:
        return "pos"
    return "mid"


def health_class(value: float | None) -> str:
    if value is None:
        return "none"
    if value < 0.4:
        return "neg"
    if value < 0.6:
        return "mid"
    return "pos"


# -- live ----------------------------------------------------------------------------------


def change_signature(db: sqlite_utils.Database) -> tuple:
    """Cheap fingerprint of what the Live page shows; changes with every new score or alert."""
    return tuple(
        db.execute(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM utterances),"
            " (SELECT COUNT(*) FROM alerts), (SELECT COUNT(acknowledged_at) FROM alerts),"
            " (SELECT COUNT(*) FROM calls), (SELECT COUNT(*) FROM calls WHERE state = 'live')"
        ).fetchone()
    )


def _call_row(r: dict) -> dict:
    m = _loads(r.get("metrics"), {})
    traj = m.pop("trajectory", []) if isinstance(m, dict) else []
    return {
        "id": r["id"],
        "position": r["position"],
        "customer_ref": r["customer_ref"],
        "call_type": r["call_type"],
        "segment": r["segment"],
        "source": r["source"],
        "state": r["state"],
        "started_at": r["started_at"],
        "ended_at": r["ended_at"],
        "duration": r["duration"],
        "alerts": r["alerts"] or 0,
        "metrics": m if isinstance(m, dict) else {},
        "trajectory": traj if isinstance(traj, list) else [],
    }


def _alert_row(r: dict) -> dict:
    out = dict(r)
    out["evidence"] = _loads(r.get("evidence"), {})
    out["acknowledged"] = r.get("acknowledged_at") is not None
    return out


def live_positions(db: sqlite_utils.Database, configured: list[str] | None = None) -> list[dict]:
    """Every known position: configured ones first, then any seen in calls."""
    now = time.time()
    names = list(configured or [])
    for (p,) in db.execute(
        "SELECT DISTINCT position FROM calls WHERE position IS NOT NULL ORDER BY position"
    ):
        if p not in names:
            names.append(p)
    out = []
    for pos in names:
        row = db.execute(
            "SELECT * FROM calls WHERE position = ? ORDER BY started_at DESC LIMIT 1", [pos]
        ).fetchone()
        if row is None:
            out.append(
                {
                    "position": pos,
                    "state": "idle",
                    "call": None,
                    "emotion": None,
                    "sentiment": None,
                    "sentiment_class": "none",
                    "trajectory": [],
                    "alerts": [],
                    "last_activity": None,
                }
            )
            continue
        cols = [d[0] for d in db.execute("SELECT * FROM calls LIMIT 0").description]
        call = _call_row(dict(zip(cols, row, strict=True)))
        last = db.execute(
            "SELECT id, emotion_label, confidence, uncertain, arousal, valence, sentiment, created_at"
            " FROM utterances WHERE call_id = ? AND speaker = 'customer' ORDER BY idx DESC LIMIT 1",
            [call["id"]],
        ).fetchone()
        act = db.execute(
            "SELECT MAX(created_at) FROM utterances WHERE call_id = ?", [call["id"]]
        ).fetchone()[0]
        last_activity = act or call["started_at"]
        on_call = call["state"] == "live" and (now - (last_activity or 0)) < LIVE_STALE_S
        emotion = None
        sent = None
        if last is not None:
            if last[1]:
                emotion = {
                    "label": last[1],
                    "confidence": last[2],
                    "uncertain": bool(last[3]),
                    "arousal": last[4],
                    "valence": last[5],
                }
            sent = last[6]
        # the running sentiment the rules see: mean of the last three scored customer utterances
        traj = call["trajectory"]
        if traj:
            tail = [p["sentiment"] for p in traj[-3:] if p.get("sentiment") is not None]
            if tail:
                sent = round(sum(tail) / len(tail), 3)
        alerts = [
            _alert_row(dict(a))
            for a in db.query(
                "SELECT * FROM alerts WHERE call_id = ? AND acknowledged_at IS NULL ORDER BY created_at DESC",
                [call["id"]],
            )
        ]
        out.append(
            {
                "position": pos,
                "state": "on_call" if on_call else "idle",
                "call": {
                    k: call[k]
                    for k in (
                        "id",
                        "customer_ref",
                        "call_type",
                        "segment",
                        "state",
                        "started_at",
                        "ended_at",
                        "duration",
                        "alerts",
                    )
                }
                | {"health": call["metrics"].get("health")},
                "emotion": emotion,
                "sentiment": sent,
                "sentiment_class": sentiment_class(sent),
                "trajectory": traj[-SPARK_POINTS:],
                "alerts": alerts,
                "last_activity": last_activity,
            }
        )
    return out


def live_snapshot(db: sqlite_utils.Database, configured: list[str] | None = None) -> dict:
    return {
        "at": time.time(),
        "positions": live_positions(db, configured),
        "alerts": list_alerts(db, state="open", limit=10)["items"],
    }


# -- calls ---------------------------------------------------------------------------------


def parse_time(value: str | None) -> float | None:
    """Epoch seconds from '1700000000', '2026-11-28' or '2026-11-28T09:30' (local time)."""
    if value is None or value == "":
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError as exc:
        raise ValueError(
            f"not a time: {value!r} (use YYYY-MM-DD[THH:MM] or epoch seconds)"
        ) from exc


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _page(
    db: sqlite_utils.Database,
    table: str,
    where: list[str],
    args: list,
    order: str,
    limit: int,
    offset: int,
) -> tuple[int, list[dict]]:
    """(total matching rows, one page of them) for the filtered lists of the panel and API."""
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total = db.execute(f"SELECT COUNT(*) FROM {table}{clause}", args).fetchone()[0]
    rows = db.query(
        f"SELECT * FROM {table}{clause} ORDER BY {order} LIMIT ? OFFSET ?", [*args, limit, offset]
    )
    return total, [dict(r) for r in rows]


def list_calls(
    db: sqlite_utils.Database,
    since: float | None = None,
    until: float | None = None,
    position: str | None = None,
    customer: str | None = None,
    alert: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict:
    where, args = [], []
    if since is not None:
        where.append("started_at >= ?")
        args.append(since)
    if until is not None:
        where.append("started_at < ?")
        args.append(until)
    if position:
        where.append("position = ?")
        args.append(position)
    if customer:
        where.append("customer_ref LIKE ? ESCAPE '\\'")
        args.append(_like(customer))
    if alert == "yes":
        where.append("alerts > 0")
    elif alert == "no":
        where.append("COALESCE(alerts, 0) = 0")
    total, rows = _page(db, "calls", where, args, "started_at DESC", limit, offset)
    items = []
    for r in rows:
        c = _call_row(r)
        m = c["metrics"]
        items.append(
            {
                **{
                    k: c[k]
                    for k in (
                        "id",
                        "position",
                        "customer_ref",
                        "call_type",
                        "segment",
                        "source",
                        "state",
                        "started_at",
                        "ended_at",
                        "duration",
                        "alerts",
                    )
                },
                "sentiment_start": m.get("sentiment_start"),
                "sentiment_end": m.get("sentiment_end"),
                "sentiment_mean": m.get("sentiment_mean"),
                "health": m.get("health"),
                "spark": c["trajectory"][-SPARK_POINTS:],
            }
        )
    return {"total": total, "limit": limit, "offset": offset, "items": items}


def positions(db: sqlite_utils.Database) -> list[str]:
    return [
        r[0]
        for r in db.execute(
            "SELECT DISTINCT position FROM calls WHERE position IS NOT NULL ORDER BY position"
        )
    ]


def call_detail(db: sqlite_utils.Database, call_id: str) -> dict | None:
    r = db.execute("SELECT * FROM calls WHERE id = ?", [call_id]).fetchone()
    if r is None:
        return None
    cols = [d[0] for d in db.execute("SELECT * FROM calls LIMIT 0").description]
    call = _call_row(dict(zip(cols, r, strict=True)))
    utts = []
    for u in db.query(
        "SELECT u.*, t.text AS text, t.withheld AS withheld FROM utterances u"
        " LEFT JOIN transcripts t ON t.utterance_id = u.id"
        " WHERE u.call_id = ? ORDER BY u.start, u.idx",
        [call_id],
    ):
        u = dict(u)
        utts.append(
            {
                "id": u["id"],
                "idx": u["idx"],
                "speaker": u["speaker"],
                "start": u["start"],
                "end": u["end"],
                "emotion_label": u["emotion_label"],
                "confidence": u["confidence"],
                "uncertain": bool(u["uncertain"]) if u["uncertain"] is not None else None,
                "arousal": u["arousal"],
                "valence": u["valence"],
                "sentiment": u["sentiment"],
                "text_sentiment": u["text_sentiment"],
                "wpm": u["wpm"],
                "key_phrases": _loads(u["key_phrases"], []),
                "text": u["text"],
                "withheld": bool(u["withheld"]),
            }
        )
    alerts = [
        _alert_row(dict(a))
        for a in db.query(
            "SELECT * FROM alerts WHERE call_id = ? ORDER BY at, created_at", [call_id]
        )
    ]
    return {**call, "utterances": utts, "alert_items": alerts}


# -- customers -----------------------------------------------------------------------------


def _customer(r: dict) -> dict:
    d = _loads(r.get("detail"), {})
    hist = d.get("history", []) if isinstance(d, dict) else []
    return {
        "customer_ref": r["customer_ref"],
        "segment": r["segment"],
        "calls": r["calls"] or 0,
        "health": r["health"],
        "trend": r["trend"],
        "risk": r["risk"],
        "advocacy": r["advocacy"],
        "state": r["state"],
        "last_call_id": r["last_call_id"],
        "updated_at": r["updated_at"],
        "history": [
            {k: h.get(k) for k in ("call_id", "sentiment", "enthusiasm", "ts")}
            for h in hist
            if isinstance(h, dict)
        ],
    }


def list_customers(
    db: sqlite_utils.Database, q: str | None = None, limit: int = 100, offset: int = 0
) -> dict:
    where, args = [], []
    if q:
        where.append("customer_ref LIKE ? ESCAPE '\\'")
        args.append(_like(q))
    total, rows = _page(
        db, "relationships", where, args, "risk DESC, health ASC, customer_ref", limit, offset
    )
    return {"total": total, "limit": limit, "offset": offset, "items": [_customer(r) for r in rows]}


def customer_detail(db: sqlite_utils.Database, ref: str) -> dict | None:
    r = db.execute("SELECT * FROM relationships WHERE customer_ref = ?", [ref]).fetchone()
    if r is None:
        return None
    cols = [d[0] for d in db.execute("SELECT * FROM relationships LIMIT 0").description]
    c = _customer(dict(zip(cols, r, strict=True)))
    c["recent_calls"] = [
        dict(x)
        for x in db.query(
            "SELECT id, started_at, duration, call_type, position, alerts FROM calls"
            " WHERE customer_ref = ? ORDER BY started_at DESC LIMIT 20",
            [ref],
        )
    ]
    c["alerts"] = [
        _alert_row(dict(a))
        for a in db.query(
            "SELECT * FROM alerts WHERE customer_ref = ? ORDER BY created_at DESC LIMIT 20", [ref]
        )
    ]
    return c


# -- alerts --------------------------------------------------------------------------------


def list_alerts(
    db: sqlite_utils.Database,
    state: str = "open",
    severity: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict:
    where, args = [], []
    if state == "open":
        where.append("acknowledged_at IS NULL")
    elif state == "acknowledged":
        where.append("acknowledged_at IS NOT NULL")
    if severity:
        where.append("severity = ?")
        args.append(severity)
    total, rows = _page(db, "alerts", where, args, "created_at DESC", limit, offset)
    return {
        "total": total,
        "limit": limit,
        "offset": offset,
        "items": [_alert_row(r) for r in rows],
    }


def ack_alert(db: sqlite_utils.Database, alert_id: str, user: str) -> dict | None:
    """Acknowledge an alert (idempotent); None when it does not exist."""
    if not alert_rows.acknowledge(db, alert_id, user):
        return None
    r = db.execute("SELECT * FROM alerts WHERE id = ?", [alert_id]).fetchone()
    cols = [d[0] for d in db.execute("SELECT * FROM alerts LIMIT 0").description]
    return _alert_row(dict(zip(cols, r, strict=True)))


# -- health and counts ---------------------------------------------------------------------


def counts(db: sqlite_utils.Database) -> dict[str, int]:
    q = lambda sql: int(db.execute(sql).fetchone()[0] or 0)  # noqa: E731
    return {
        "calls": q("SELECT COUNT(*) FROM calls"),
        "calls_live": q("SELECT COUNT(*) FROM calls WHERE state = 'live'"),
        "utterances": q("SELECT COUNT(*) FROM utterances"),
        "outbox_pending": q("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL"),
        "alerts_unacknowledged": q("SELECT COUNT(*) FROM alerts WHERE acknowledged_at IS NULL"),
        "customers": q("SELECT COUNT(*) FROM relationships"),
    }


def health(db: sqlite_utils.Database) -> dict:
    """The daemon's health snapshot (settings key `health`) plus outbox counts computed here."""
    row = settings.get_with_time(db, settings.HEALTH)
    snapshot = _loads(row[0], None) if row else None
    if snapshot is not None and not isinstance(snapshot, dict):
        snapshot = {"value": snapshot}
    o = db.execute(
        "SELECT COUNT(*), SUM(sent_at IS NULL), SUM(sent_at IS NOT NULL),"
        " MIN(CASE WHEN sent_at IS NULL THEN created_at END), MAX(sent_at) FROM outbox"
    ).fetchone()
    by_kind = outbox.pending_by_kind(db)
    now = time.time()
    return {
        "snapshot": snapshot,
        "snapshot_age_s": round(now - row[1], 1) if row and row[1] else None,
        "outbox": {
            "rows": o[0] or 0,
            "pending": o[1] or 0,
            "sent": o[2] or 0,
            "oldest_pending_age_s": round(now - o[3], 1) if o[3] else None,
            "last_sent_age_s": round(now - o[4], 1) if o[4] else None,
            "pending_by_kind": by_kind,
        },
        "counts": counts(db),
    }


def data_version(db: sqlite_utils.Database) -> int:
    """Changes when another connection committed (cheap: no table is read)."""
    return int(db.execute("PRAGMA data_version").fetchone()[0])


def flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts -> sorted (dotted key, scalar or list) rows, for showing any snapshot shape."""
    if not isinstance(d, dict):
        return [(prefix or "value", d)]
    out: list[tuple[str, Any]] = []
    for k in sorted(d, key=str):
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(d[k], dict) and d[k]:
            out += flatten(d[k], key)
        else:
            out.append((key, d[k]))
    return out


_KPI_KEYS = {
    "cpu": ("cpu_percent", "cpu_pct", "cpu", "cpu_load", "load1", "load_1m"),
    "temperature": ("temperature_c", "cpu_temp_c", "temp_c", "temperature", "soc_temp_c"),
    "rtf": ("rtf", "real_time_factor", "rtf_p50", "rtf_mean"),
    "broker": ("broker_connected", "mqtt_connected", "connected"),
    "memory": ("rss_mb", "memory_mb", "mem_used_pct", "memory_percent"),
    "uptime": ("uptime_s", "uptime"),
    "latency": ("latency_p95_s",),
    "disk_free": ("disk_free_mb",),
    "active_calls": ("active_calls",),
    "mqtt_enabled": ("mqtt_enabled",),
}


def health_kpis(snapshot: dict | None) -> dict:
    """Pick the well-known numbers out of the daemon's snapshot, whatever its nesting."""
    rows = flatten(snapshot) if snapshot else []
    found: dict[str, Any] = {}
    for name, keys in _KPI_KEYS.items():
        for want in keys:
            hit = next(
                (
                    v
                    for k, v in rows
                    if k.rsplit(".", 1)[-1] == want and not isinstance(v, (list, dict))
                ),
                None,
            )
            if hit is not None:
                found[name] = hit
                break
    queues = [
        (k, v)
        for k, v in rows
        if "queue" in k.lower() and isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    found["queues"] = queues
    snap = snapshot or {}
    found["alarms"] = [str(a) for a in snap.get("alarms") or [] if isinstance(a, str)]
    found["streams"] = [x for x in snap.get("streams") or [] if isinstance(x, dict)]
    return found
