"""An admin's overrides of config sections, saved on the panel's Settings page (`settings` keys
`retention` and `mqtt`) and applied by the daemon when it starts and by `appliance retention` on
every run (`effective_config`).

`validate` runs when an override is saved and again whenever it is read: only the keys in
FIELDS, numbers finite and in the config's range, a broker URL without credentials (they live
in files) and with TLS unless the broker is on loopback. A stored override that no longer
validates is ignored with an error in the log, and the config file's values apply.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import sqlite_utils

from appliance.config import AppConfig, ConfigError, check_broker_url, config_from_dict
from appliance.store import settings
from appliance.store.connection import connect, immediate, migrate

log = logging.getLogger(__name__)

FIELDS = {
    "retention": (
        "transcripts_days",
        "scores_days",
        "outbox_sent_days",
        "alerts_days",
        "min_free_mb",
    ),
    "mqtt": ("url", "prefix", "keepalive", "pseudonymise_customers"),
}
"""What an admin may override from the panel, per section. Not the audit log's retention, not
credentials or certificate files: those stay in the config file."""


def validate(section: str, values: Any) -> dict:
    """The override with the config's types; ConfigError names the offending key."""
    if section not in FIELDS:
        raise ConfigError(section, "has no panel override")
    if not isinstance(values, dict):
        raise ConfigError(section, "override must be an object")
    for key in values:
        if key not in FIELDS[section]:
            raise ConfigError(f"{section}.{key}", "cannot be overridden from the panel")
    if section == "mqtt" and isinstance(values.get("url"), str):
        check_broker_url("mqtt.url", values["url"], tls_off_loopback=True)
    checked = getattr(config_from_dict({section: values}), section)
    return {k: getattr(checked, k) for k in values}


def read(db: sqlite_utils.Database, section: str) -> tuple[dict, float] | None:
    """(validated override, saved at) of a section; None when absent or invalid (logged)."""
    row = settings.get_with_time(db, settings.override_key(section))
    if row is None:
        return None
    try:
        return validate(section, json.loads(row[0])), row[1]
    except (ValueError, ConfigError) as exc:
        log.error("ignoring the panel's %s override: %s", section, exc)
        return None


def save(db: sqlite_utils.Database, section: str, values: Any) -> dict:
    """Validate and store an override (ConfigError names the key); returns what was stored."""
    values = validate(section, values)
    with immediate(db):
        settings.put_json(db, settings.override_key(section), values)
    return values


def apply(cfg: AppConfig, db: sqlite_utils.Database) -> AppConfig:
    """`cfg` with every valid stored override applied."""
    for section in FIELDS:
        found = read(db, section)
        if found:
            new = dataclasses.replace(getattr(cfg, section), **found[0])
            cfg = dataclasses.replace(cfg, **{section: new})
            log.info("panel override of [%s] applied: %s", section, ", ".join(sorted(found[0])))
    return cfg


def effective_config(cfg: AppConfig, db_path: str | Path) -> AppConfig:
    """The config the daemon and `appliance retention` run with: the file plus the overrides."""
    db = connect(db_path)
    try:
        migrate(db)
        return apply(cfg, db)
    finally:
        db.conn.close()
