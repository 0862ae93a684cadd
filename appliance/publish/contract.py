"""The MQTT contract: topics, payload schemas, and the allowlist every message must pass.

The JSON Schema files in `appliance/schemas/` are the allowlist and the documentation: every
object is closed (`additionalProperties: false`) and every string is an enumeration or a short
id. `check_payload` adds a belt to those braces: no string longer than 64 characters and no key
that names text or audio, whatever a schema file might say.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA_VERSION = 1
OUTBOX_KINDS = ("utterance", "call", "relationship", "alert", "health")
ALL_KINDS = (*OUTBOX_KINDS, "status", "checkpoint", "cmd_call")
MAX_STRING = 64
FORBIDDEN_KEYS = frozenset(
    {"text", "transcript", "words", "audio", "samples", "pcm", "wav", "reason", "evidence", "name"}
)
CMD_MAX_BYTES = 2048


class ContractError(ValueError):
    """A payload is not allowed to leave (or enter) the box."""


@cache
def schema(kind: str) -> dict:
    if kind not in ALL_KINDS:
        raise ContractError(f"unknown payload kind {kind!r}")
    text = resources.files("appliance.publish.schemas").joinpath(f"{kind}.json").read_text()
    return json.loads(text)


@cache
def _validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(schema(kind))


def _walk(value: Any, path: str, depth: int = 0) -> None:
    if depth > 8:
        raise ContractError(f"{path}: nested too deeply")
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise ContractError(f"{path}: string of {len(value)} characters (max {MAX_STRING})")
        if any(c.isspace() or not c.isprintable() for c in value):
            raise ContractError(f"{path}: whitespace or control characters (free text) not allowed")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ContractError(f"{path}: non-finite number not allowed")
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or k.lower() in FORBIDDEN_KEYS:
                raise ContractError(f"{path}.{k}: key not allowed in a published payload")
            _walk(v, f"{path}.{k}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _walk(v, f"{path}[{i}]", depth + 1)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raise ContractError(f"{path}: binary data not allowed")
    elif value is not None and not isinstance(value, (bool, int)):
        raise ContractError(f"{path}: {type(value).__name__} is not a JSON value")


def check_payload(kind: str, payload: dict) -> None:
    """Raise ContractError unless `payload` is an allowed `kind` message."""
    if not isinstance(payload, dict):
        raise ContractError(f"{kind}: payload must be an object, not {type(payload).__name__}")
    _walk(payload, kind)
    errors = sorted(_validator(kind).iter_errors(payload), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = ".".join(str(p) for p in e.path) or "(root)"
        raise ContractError(f"{kind}.{where}: {_reason(e)}"[:300])


def _reason(e: Any) -> str:
    """Why a value failed, without the value: it may be a customer reference, and reasons are
    logged (the system log is no place for customer references)."""
    if e.validator in ("required", "additionalProperties"):
        return e.message[:200]  # these name properties, never values
    if e.validator in ("enum", "const"):
        return f"must be one of {json.dumps(e.validator_value)[:200]}"
    if e.validator == "type":
        return f"must be of type {e.validator_value}"
    if e.validator == "pattern":
        return f"does not match {e.validator_value}"
    return f"fails {e.validator} {json.dumps(e.validator_value)[:80]}"


def new_message(kind: str, box_id: str, body: dict, ts: float | None = None) -> dict:
    """Wrap a body in the envelope (schema, msg_id, box_id, ts). `seq` is set when the row is queued."""
    if kind not in OUTBOX_KINDS:
        raise ContractError(f"{kind!r} is not an outbox kind")
    return {
        "schema": f"{kind}/{SCHEMA_VERSION}",
        "msg_id": str(uuid.uuid4()),
        "seq": 0,
        "box_id": box_id,
        "ts": round(time.time() if ts is None else ts, 3),
        **body,
    }


def status_message(
    box_id: str, state: str, seq: int, acked_seq: int, software_version: str
) -> dict:
    """The retained availability message; doubles as the publisher's delivery checkpoint.

    `seq` is the highest outbox seq written so far (status messages do not consume seq
    numbers); `acked_seq` is the highest seq such that every row up to it had been
    acknowledged by the broker before this status was published.
    """
    return {
        "schema": f"status/{SCHEMA_VERSION}",
        "msg_id": str(uuid.uuid4()),
        "seq": max(0, int(seq)),
        "box_id": box_id,
        "ts": round(time.time(), 3),
        "state": state,
        "acked_seq": max(0, int(acked_seq)),
        "software_version": software_version,
    }


def checkpoint_message(box_id: str, seq: int, acked_seq: int) -> dict:
    """The publisher's retained delivery checkpoint (see appliance/publisher.py)."""
    return {
        "schema": f"checkpoint/{SCHEMA_VERSION}",
        "msg_id": str(uuid.uuid4()),
        "seq": max(0, int(seq)),
        "box_id": box_id,
        "ts": round(time.time(), 3),
        "acked_seq": max(0, int(acked_seq)),
    }


def topic(prefix: str, box_id: str, kind: str) -> str:
    """`<prefix>/v1/<box>/<kind>`; inbound commands under `<prefix>/v1/<box>/cmd/<name>`."""
    leaf = "cmd/call" if kind == "cmd_call" else kind
    return f"{prefix}/v{SCHEMA_VERSION}/{box_id}/{leaf}"


def parse_command(raw: Any) -> dict:
    """Decode and validate an inbound call command; ContractError names the reason."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise ContractError(f"command payload of type {type(raw).__name__}")
    raw = bytes(raw)
    if len(raw) > CMD_MAX_BYTES:
        raise ContractError(f"command of {len(raw)} bytes exceeds {CMD_MAX_BYTES}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ContractError(f"command is not JSON: {str(exc)[:100]}") from exc
    if not isinstance(data, dict):
        raise ContractError("command must be a JSON object")
    _shape(data)
    check_payload("cmd_call", data)
    return data


def _shape(cmd: dict) -> None:
    """What most garbage fails, checked in microseconds before the JSON Schema (a flood of it
    must not delay the valid command behind it): known keys, short strings, a position."""
    allowed = schema("cmd_call")["properties"]
    for k, v in cmd.items():
        if k not in allowed:
            raise ContractError(f"cmd_call.{str(k)[:40]}: key not allowed")
        if not isinstance(v, str) or len(v) > MAX_STRING:
            raise ContractError(
                f"cmd_call.{k}: must be a string of at most {MAX_STRING} characters"
            )
    if "position" not in cmd:
        raise ContractError("cmd_call: 'position' is required")
