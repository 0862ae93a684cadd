"""Jinja filters and globals: times, durations, signed numbers, sentiment colour classes."""

from __future__ import annotations

import time

from flask import Flask

from appliance.panel.queries import health_class, sentiment_class


def fmt_time(ts: float | None, with_date: bool = True) -> str:
    if ts is None:
        return "–"
    fmt = "%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S"
    return time.strftime(fmt, time.localtime(float(ts)))


def fmt_dur(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(float(seconds)))
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def signed(v: float | None, nd: int = 2) -> str:
    return "–" if v is None else f"{float(v):+.{nd}f}"


def num(v: float | None, nd: int = 2) -> str:
    return "–" if v is None else f"{float(v):.{nd}f}"


def pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * float(v):.0f}%"


def ago(ts: float | None) -> str:
    if ts is None:
        return "–"
    d = max(0.0, time.time() - float(ts))
    if d < 60:
        return f"{d:.0f} s ago"
    if d < 3600:
        return f"{d / 60:.0f} min ago"
    if d < 86400:
        return f"{d / 3600:.1f} h ago"
    return f"{d / 86400:.1f} d ago"


def spark_points(
    values: list[float | None],
    width: int = 120,
    height: int = 28,
    lo: float = -1.0,
    hi: float = 1.0,
) -> str:
    """SVG polyline points for a sparkline of values in [lo, hi]."""
    vals = [v for v in values if v is not None]
    if len(vals) < 2:
        return ""
    n = len(vals) - 1
    pts = []
    for i, v in enumerate(vals):
        x = width * i / n
        y = height - (min(max(float(v), lo), hi) - lo) / (hi - lo) * height
        pts.append(f"{x:.1f},{y:.1f}")
    return " ".join(pts)


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(
        fmt_time=fmt_time,
        fmt_dur=fmt_dur,
        signed=signed,
        num=num,
        pct=pct,
        ago=ago,
        sclass=sentiment_class,
        hclass=health_class,
    )
    app.jinja_env.globals.update(spark_points=spark_points)

    @app.context_processor
    def inject_user():
        from flask import g

        return {"user": g.get("user"), "demo": app.config.get("DEMO", False)}
