"""The MQTT contract: every topic's schema is a closed allowlist of numbers, enumerations and
short ids; free text, transcripts and audio cannot pass; inbound commands never crash us."""

from __future__ import annotations

import contextlib
import copy
import json
import re
import types
from pathlib import Path

import pytest
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from appliance.config import MqttConfig
from appliance.publish import contract
from appliance.publish.mqtt import Publisher
from appliance.publish.pseudonym import pseudonymise

TRANSCRIPT = "my card number is 4111 1111 1111 1111 and I am really angry about it"
AUDIO = [0.01 * (i % 7) for i in range(1600)]
DOCS = ROOT / "docs" / "mqtt.md"
SHORT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
UUID = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def example(kind: str) -> dict:
    """A valid, fully populated payload of `kind` (every optional field set)."""
    env = {"msg_id": "0b8f7c1e-2f3a-4c5d-8e9f-0a1b2c3d4e5f", "seq": 7, "box_id": "box-01"}
    env["schema"] = f"{kind}/1"
    env["ts"] = 1790000000.25
    emo = {
        "label": "angry",
        "confidence": 0.8,
        "intensity": 0.6,
        "arousal": 0.5,
        "valence": -0.4,
        "uncertain": False,
    }
    bodies = {
        "utterance": {
            "call_id": "c-1",
            "position": "pos-1",
            "speaker": "customer",
            "index": 3,
            "start": 1.5,
            "end": 3.0,
            "emotion": emo,
            "sentiment": -0.3,
            "sentiment_confidence": 0.7,
            "text_sentiment": -0.2,
            "words_per_minute": 140.0,
            "key_phrase_count": 1,
            "redaction_count": 0,
        },
        "call": {
            "call_id": "c-1",
            "position": "pos-1",
            "state": "ended",
            "customer": "c-0123456789abcdef0123",
            "call_type": "support",
            "segment": "gold",
            "started_at": 1790000000.0,
            "ended_at": 1790000060.0,
            "duration": 60.0,
            "customer_utterances": 5,
            "agent_utterances": 6,
            "sentiment_mean": 0.1,
            "sentiment_start": -0.2,
            "sentiment_end": 0.4,
            "sentiment_slope": 0.01,
            "sentiment_min": -0.5,
            "enthusiasm": 0.4,
            "health": 0.6,
            "talk_listen_ratio": 1.2,
            "agent_talk_s": 30.0,
            "customer_talk_s": 25.0,
            "overtalk_count": 1,
            "overtalk_s": 0.5,
            "longest_silence_s": 2.0,
            "customer_wpm": 150.0,
            "emotion_mix": {"neutral": 0.5, "angry": 0.5},
            "alerts": 1,
        },
        "relationship": {
            "customer": "c-0123456789abcdef0123",
            "segment": "gold",
            "calls": 3,
            "last_call_id": "c-1",
            "health": 0.5,
            "trend": -0.1,
            "risk": 0.4,
            "advocacy": 0.2,
            "state": "declining",
        },
        "alert": {
            "alert_id": "a-1",
            "call_id": "c-1",
            "position": "pos-1",
            "customer": "c-0123456789abcdef0123",
            "rule": "negative_streak",
            "severity": "warning",
            "action": "intervention_recommended",
            "signal": "sentiment",
            "value": -0.6,
            "threshold": -0.5,
            "at": 42.0,
        },
        "health": {
            "uptime_s": 100.0,
            "cpu_percent": 12.0,
            "load1": 0.5,
            "temperature_c": 50.0,
            "rtf": 0.1,
            "queue_depth": 0,
            "overruns": 0,
            "outbox_pending": 3,
            "disk_free_mb": 1000.0,
            "broker_connected": True,
            "stt_engine": "whisper",
            "model_version": "1.0.0",
            "software_version": "0.1.0",
            "active_calls": 2,
            "alarms": ["disk_low"],
        },
        "status": {"state": "online", "acked_seq": 6, "software_version": "0.1.0"},
    }
    return {**env, **bodies[kind]}


def leaf_paths(value, path=()):
    """Every (path, value) leaf of a payload (objects and arrays descended)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaf_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaf_paths(v, (*path, i))
    else:
        yield path, value


def set_path(payload: dict, path: tuple, new) -> dict:
    out = copy.deepcopy(payload)
    target = out
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = new
    return out


PUBLISHED = (*contract.OUTBOX_KINDS, "status")


# -- the schema files are the allowlist -----------------------------------------------------


@pytest.mark.parametrize("kind", contract.ALL_KINDS)
def test_schema_files_are_valid_and_shipped(kind):
    s = contract.schema(kind)
    Draft202012Validator.check_schema(s)
    assert s["$id"] == f"appliance/{kind}/1"
    assert (ROOT / "appliance" / "publish" / "schemas" / f"{kind}.json").exists()


def _walk_schema(node, path="$"):
    yield path, node
    for key in ("properties",):
        for name, sub in node.get(key, {}).items():
            yield from _walk_schema(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk_schema(node["items"], f"{path}[]")


@pytest.mark.parametrize("kind", contract.ALL_KINDS)
def test_every_schema_node_is_closed_and_admits_no_free_text(kind):
    for path, node in _walk_schema(contract.schema(kind)):
        types_ = node.get("type", [])
        types_ = [types_] if isinstance(types_, str) else types_
        if "object" in types_:
            assert node.get("additionalProperties") is False, f"{kind} {path} is open"
        if "array" in types_:
            assert node.get("maxItems", 999) <= 16, f"{kind} {path} unbounded array"
            items = node["items"]
            assert "enum" in items, f"{kind} {path}: arrays hold enumerations only"
        if "string" in types_:
            assert node.get("maxLength", 999) <= 64, f"{kind} {path}"
            assert node.get("pattern") in (SHORT_ID.pattern, UUID), f"{kind} {path}: not a short id"
        if "enum" in node or "const" in node:
            values = node.get("enum", [node.get("const")])
            assert all(
                v is None or (isinstance(v, str) and re.match(r"^[a-z0-9_/-]{1,32}$", v))
                for v in values
            ), path
        assert types_ or "enum" in node or "const" in node, f"{kind} {path} has no type"


@pytest.mark.parametrize("kind", PUBLISHED)
def test_examples_pass_and_every_payload_carries_the_envelope(kind):
    p = example(kind)
    contract.check_payload(kind, p)
    required = set(contract.schema(kind)["required"])
    assert {"schema", "msg_id", "seq", "box_id", "ts"} <= required


@pytest.mark.parametrize("kind", PUBLISHED)
def test_no_free_text_transcript_or_audio_passes_any_field(kind):
    """Walk every topic and every field: text, transcripts, audio and extra keys are refused."""
    base = example(kind)
    intruders = [
        TRANSCRIPT,
        "angry customer",  # two words
        "x" * 65,
        AUDIO,
        [TRANSCRIPT],
        {"text": TRANSCRIPT},
        b"RIFF....WAVEfmt ",
        float("nan"),
        float("inf"),
    ]
    for path, _ in leaf_paths(base):
        for bad in intruders:
            payload = set_path(base, path, bad)
            with pytest.raises(contract.ContractError):
                contract.check_payload(kind, payload)
    for key in ("text", "transcript", "words", "audio", "samples", "reason", "evidence", "note"):
        with pytest.raises(contract.ContractError):
            contract.check_payload(kind, {**base, key: "x"})
        if isinstance(base.get("emotion"), dict):
            with pytest.raises(contract.ContractError):
                contract.check_payload(kind, {**base, "emotion": {**base["emotion"], key: 1}})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(PUBLISHED), text=st.text(min_size=1, max_size=300), data=st.data())
def test_property_any_text_with_spaces_or_long_never_passes(kind, text, data):
    base = example(kind)
    paths = [p for p, v in leaf_paths(base) if isinstance(v, str)]
    path = data.draw(st.sampled_from(paths))
    payload = set_path(base, path, text)
    ok = bool(SHORT_ID.match(text)) or text in _allowed_values(kind, path)
    if ok:
        with contextlib.suppress(contract.ContractError):  # may still be the wrong enum/const
            contract.check_payload(kind, payload)
    else:
        with pytest.raises(contract.ContractError):
            contract.check_payload(kind, payload)
    if any(c.isspace() for c in text) or len(text) > 64:
        with pytest.raises(contract.ContractError):
            contract.check_payload(kind, payload)


def _allowed_values(kind, path):
    node = contract.schema(kind)
    for p in path:
        node = node["items"] if isinstance(p, int) else node["properties"][p]
    return set(node.get("enum", [])) | ({node["const"]} if "const" in node else set())


def test_only_the_publisher_calls_publish():
    """One function publishes: no other module calls paho's publish()."""
    offenders = []
    for path in (ROOT / "appliance").rglob("*.py"):
        text = path.read_text()
        publisher = path.relative_to(ROOT).as_posix() == "appliance/publish/mqtt.py"
        if re.search(r"\.publish\(", text) and not publisher:
            offenders.append(str(path.relative_to(ROOT)))
        if publisher:
            assert len(re.findall(r"\.publish\(", text)) == 1  # inside publish_payload
    assert offenders == []


class FakeClient:
    def __init__(self):
        self.calls = []

    def publish(self, topic, payload, qos, retain):
        self.calls.append((topic, payload, qos, retain))
        return types.SimpleNamespace(rc=0, mid=len(self.calls))


def test_publish_payload_validates_and_refuses(tmp_path):
    pub = Publisher(tmp_path / "x.db", MqttConfig(url="mqtt://127.0.0.1:1"), box_id="box-7")
    pub.client = FakeClient()
    ok = example("utterance")
    assert pub.publish_payload("utterance", ok) is not None
    topic, body, qos, retain = pub.client.calls[0]
    assert topic == "callcenter/v1/box-7/utterance" and qos == 1 and not retain
    assert json.loads(body) == ok
    for bad in ({**ok, "text": TRANSCRIPT}, set_path(ok, ("emotion", "label"), "furious"), None):
        assert pub.publish_payload("utterance", bad) is None
    assert pub.publish_payload("transcript", {"text": TRANSCRIPT}) is None
    assert pub.refused == 4 and len(pub.client.calls) == 1


def test_topic_tree():
    assert contract.topic("acme/cc", "box-01", "utterance") == "acme/cc/v1/box-01/utterance"
    assert contract.topic("callcenter", "b", "cmd_call") == "callcenter/v1/b/cmd/call"
    for kind in ("status", "utterance", "call", "relationship", "alert", "health"):
        assert contract.topic("p", "b", kind) == f"p/v1/b/{kind}"


def test_pseudonymise_is_keyed_stable_and_short():
    k1, k2 = b"k" * 32, b"j" * 32
    a = pseudonymise("CRM-000123", k1)
    assert a == pseudonymise("CRM-000123", k1)
    assert a != pseudonymise("CRM-000123", k2)
    assert a != pseudonymise("CRM-000124", k1)
    assert "000123" not in a and SHORT_ID.match(a)


def test_customer_reference_leaves_pseudonymised(tmp_path):
    """Through the real pipeline: outbox payloads carry the keyed hash, never the reference."""
    from support.fakes import FakeEmotion, constant

    from appliance.config import config_from_dict
    from appliance.ops.analysis import analyze_file
    from appliance.ops.engines import Engines
    from appliance.pipeline.call import CallMeta
    from appliance.store.connection import connect
    from appliance.types import EmotionResult

    Stub = lambda: FakeEmotion(constant(EmotionResult("angry", 0.9, 0.8, 0.6, -0.7, False)))  # noqa: E731

    meta = CallMeta(
        position="pos-1", customer_ref="CRM-000123", call_type="support", segment="gold"
    )
    for pseudo in (True, False):
        db_path = tmp_path / f"p{pseudo}.db"
        cfg = config_from_dict({"mqtt": {"pseudonymise_customers": pseudo}})
        analyze_file(
            ROOT / "appliance" / "data" / "demo_call.wav",
            cfg,
            Engines(Stub(), None, 0.0),
            db_path=db_path,
            meta=meta,
        )
        db = connect(db_path)
        rows = [json.loads(r[0]) for r in db.execute("SELECT payload FROM outbox").fetchall()]
        db.conn.close()
        kinds = {r["schema"].split("/")[0] for r in rows}
        assert {"utterance", "call", "relationship"} <= kinds
        customers = {r["customer"] for r in rows if "customer" in r}
        assert customers, "the customer id is published"
        blob = json.dumps(rows)
        if pseudo:
            assert "CRM-000123" not in blob
            assert all(c.startswith("c-") for c in customers)
        else:
            assert customers == {"CRM-000123"}


# -- inbound commands ---------------------------------------------------------------------------


def test_valid_commands_are_accepted():
    cmd = {
        "position": "pos-1",
        "action": "start",
        "customer": "CRM-1",
        "call_type": "sales",
        "segment": "gold",
        "msg_id": "m-1",
    }
    assert contract.parse_command(json.dumps(cmd).encode()) == cmd


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1,2]", "JSON object"),
        (b'{"position": "pos 1"}', "whitespace"),
        (b'{"customer": "c"}', "position"),
        (b'{"position": "p", "text": "hello"}', "not allowed"),
        (b'{"position": "p", "call_type": "rant"}', "call_type"),
        (b'{"position": "' + b"a" * 3000 + b'"}', "exceeds"),
        (b"[" * 1500 + b"]" * 1500, "exceeds"),
        (b"[" * 1000 + b"]" * 1000, "not JSON"),
        (b'{"position": NaN}', "position"),
    ],
)
def test_bad_commands_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(contract.ContractError, match=reason):
        contract.parse_command(raw)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=4096))
def test_fuzz_parse_command_bytes_only_contract_errors(raw):
    try:
        cmd = contract.parse_command(raw)
    except contract.ContractError:
        return
    contract.check_payload("cmd_call", cmd)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)


@settings(max_examples=120, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["position", "action", "customer", "call_type", "segment", "msg_id", "x"]),
        json_values,
        max_size=7,
    )
)
def test_fuzz_parse_command_json_only_contract_errors(obj):
    try:
        raw = json.dumps(obj).encode()
    except (ValueError, UnicodeEncodeError):
        return
    try:
        cmd = contract.parse_command(raw)
    except contract.ContractError:
        return
    assert set(cmd) <= {"position", "action", "customer", "call_type", "segment", "msg_id"}


class Msg:
    """Stands in for paho's MQTTMessage (topic bytes decoded lazily, like paho)."""

    def __init__(self, topic: bytes, payload: bytes, retain: bool = False):
        self._topic, self.payload, self.retain = topic, payload, retain

    @property
    def topic(self) -> str:
        return self._topic.decode("utf-8")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic=st.sampled_from(
        [b"callcenter/v1/box-01/cmd/call", b"callcenter/v1/box-01/status", b"other", b"\xff\xfe"]
    )
    | st.binary(max_size=40),
    payload=st.binary(max_size=3000)
    | json_values.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
    retain=st.booleans(),
)
def test_fuzz_on_message_never_raises(tmp_path_factory, topic, payload, retain):
    pub = _publisher(tmp_path_factory.mktemp("fz"))
    seen = []
    pub.on_command = seen.append
    pub._on_message(pub.client, None, Msg(topic, payload, retain))
    assert pub.commands_accepted + pub.commands_rejected + pub.commands_failed <= 1
    for cmd in seen:
        contract.check_payload("cmd_call", cmd)


def _publisher(tmp: Path) -> Publisher:
    return Publisher(tmp / "x.db", MqttConfig(url="mqtt://127.0.0.1:1"))


def test_on_message_counts_rejections_and_survives_a_failing_handler(tmp_path):
    pub = _publisher(tmp_path)

    def boom(cmd):
        raise RuntimeError("handler bug")

    pub.on_command = boom
    topic = b"callcenter/v1/box-01/cmd/call"
    pub._on_message(pub.client, None, Msg(topic, b'{"position": "pos-1"}'))
    pub._on_message(pub.client, None, Msg(topic, b"garbage"))
    assert pub.commands_failed == 1 and pub.commands_rejected == 1
    assert "not JSON" in pub.last_reject_reason
    pub.on_command = lambda cmd: None
    pub._on_message(pub.client, None, Msg(topic, b'{"position": "pos-1", "action": "end"}'))
    assert pub.commands_accepted == 1


def test_mqtt_doc_describes_every_field():
    """docs/mqtt.md documents every topic and every field of every schema."""
    text = DOCS.read_text()
    for kind in contract.ALL_KINDS:
        s = contract.schema(kind)
        for name in s["properties"]:
            assert f"`{name}`" in text, f"docs/mqtt.md lacks {kind}.{name}"
    for leaf in ("status", "utterance", "call", "relationship", "alert", "health", "cmd/call"):
        assert f"/{leaf}`" in text
