"""Settings (admin role): users, alert rules (view), retention and MQTT settings, audit log.

Retention and MQTT changes are validated by `appliance.store.overrides` (the config's own
validator plus finite numbers, no credentials in URLs, TLS off loopback), stored as JSON
overrides in the `settings` table (keys `retention`, `mqtt`) and recorded in the audit log.
The daemon applies them at its next start, `appliance retention` at its next run; the page says
which is the case (docs/panel.md).
"""

from __future__ import annotations

import dataclasses
import time

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from appliance.config import AppConfig, ConfigError
from appliance.panel import db as pdb
from appliance.panel import users
from appliance.panel.security import admin_required
from appliance.store import overrides
from appliance.store import settings as kv

bp = Blueprint("admin", __name__, url_prefix="/settings")

RETENTION_FIELDS = overrides.FIELDS["retention"]
MQTT_FIELDS = overrides.FIELDS["mqtt"]


@bp.before_request
@admin_required
def _admin_only():
    return None


def _app_cfg() -> AppConfig:
    return current_app.config.get("APP_CONFIG") or AppConfig()


def effective(section: str, fields: tuple[str, ...]) -> dict:
    base = dataclasses.asdict(getattr(_app_cfg(), section))
    found = overrides.read(pdb.get_db(), section)
    override = found[0] if found else {}
    return {k: override.get(k, base[k]) for k in fields}


def override_state(section: str) -> str:
    """Whether the daemon runs with the saved override yet (from its health snapshot)."""
    found = overrides.read(pdb.get_db(), section)
    if not found:
        return "No override: the config file's values apply."
    snap = kv.get_json(pdb.get_db(), kv.HEALTH) or {}
    started = snap["ts"] - snap["uptime_s"] if "ts" in snap and "uptime_s" in snap else None
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(found[1]))
    if started is not None and found[1] < started:
        return f"Override saved {when}: the running daemon applies it."
    return f"Override saved {when}: the daemon applies it at its next start."


def rules() -> list[dict]:
    from appliance.scoring.rules import DEFAULT_RULES

    return [dataclasses.asdict(r) for r in (_app_cfg().rules or DEFAULT_RULES)]


@bp.get("")
def index():
    db = pdb.get_db()
    return render_template(
        "settings.html",
        page="settings",
        user_list=users.list_users(db),
        rules=rules(),
        retention=effective("retention", RETENTION_FIELDS),
        mqtt=effective("mqtt", MQTT_FIELDS),
        override_state={k: override_state(k) for k in overrides.FIELDS},
        audit=users.recent_audit(db, 100),
        roles=users.ROLES,
    )


@bp.post("/users")
def add_user():
    db = pdb.get_db()
    name = (request.form.get("name") or "").strip()
    role = request.form.get("role") or ""
    try:
        users.add_user(db, name, role, request.form.get("password") or "")
    except users.UserError as exc:
        users.audit(
            db,
            "user_add",
            g.user["name"],
            ok=False,
            ip=request.remote_addr,
            detail={"name": name[:64], "error": str(exc)},
        )
        flash(f"User not added: {exc}", "error")
        return redirect(url_for("admin.index"))
    users.audit(
        db, "user_add", g.user["name"], ip=request.remote_addr, detail={"name": name, "role": role}
    )
    flash(f"User {name} ({role}) added.", "ok")
    return redirect(url_for("admin.index"))


USER_ACTIONS = {
    "disable": (users.disable_user, "disabled; their sessions ended"),
    "enable": (users.enable_user, "enabled"),
    "delete": (users.delete_user, "deleted; their sessions ended"),
    "password": (
        lambda db, name: users.set_password(db, name, request.form.get("password") or ""),
        "has a new password; their sessions ended",
    ),
}


@bp.post("/users/<name>/<action>")
def user_action(name: str, action: str):
    """Disable, enable, delete a user or set its password (the same functions as the CLI)."""
    if action not in USER_ACTIONS:
        abort(404)
    db = pdb.get_db()
    fn, done = USER_ACTIONS[action]
    try:
        fn(db, name)
    except users.UserError as exc:
        detail = {"name": name[:64], "error": str(exc)}
        users.audit(db, f"user_{action}", g.user["name"], ok=False, ip=request.remote_addr,
                    detail=detail)  # fmt: skip
        flash(f"User {name[:64]} not changed: {exc}", "error")
        return redirect(url_for("admin.index"))
    users.audit(db, f"user_{action}", g.user["name"], ip=request.remote_addr, detail={"name": name})
    flash(f"User {name} {done}.", "ok")
    return redirect(url_for("admin.index"))


def _parse(section: str, fields: tuple[str, ...]) -> dict:
    """Form values -> validated override (`overrides.validate` names the bad key)."""
    base = dataclasses.asdict(getattr(AppConfig(), section))
    out: dict = {}
    for k in fields:
        default = base[k]
        if isinstance(default, bool):
            out[k] = request.form.get(k) in ("on", "true", "1")
            continue
        raw = (request.form.get(k) or "").strip()
        if isinstance(default, (int, float)):
            try:
                out[k] = int(raw) if isinstance(default, int) else float(raw)
            except ValueError:
                raise ConfigError(f"{section}.{k}", f"must be a number, got {raw[:40]!r}") from None
        else:
            out[k] = raw
    return overrides.validate(section, out)


def _save(section: str, fields: tuple[str, ...], label: str):
    db = pdb.get_db()
    before = effective(section, fields)
    try:
        value = _parse(section, fields)
    except ConfigError as exc:
        users.audit(
            db,
            "setting_change",
            g.user["name"],
            ok=False,
            ip=request.remote_addr,
            detail={"key": section, "error": str(exc)},
        )
        flash(f"{label} not saved: {exc}", "error")
        return redirect(url_for("admin.index"))
    changes = {k: [before.get(k), v] for k, v in value.items() if before.get(k) != v}
    overrides.save(db, section, value)
    users.audit(
        db,
        "setting_change",
        g.user["name"],
        ip=request.remote_addr,
        detail={"key": section, "changes": changes},
    )
    flash(f"{label} saved ({len(changes)} change(s)). {NEXT_RUN[section]}", "ok")
    return redirect(url_for("admin.index"))


NEXT_RUN = {
    "retention": "The daemon applies them at its next start, the retention purge at its next run.",
    "mqtt": "The daemon applies them at its next start.",
}


@bp.post("/retention")
def retention():
    return _save("retention", RETENTION_FIELDS, "Retention")


@bp.post("/mqtt")
def mqtt():
    return _save("mqtt", MQTT_FIELDS, "MQTT settings")
