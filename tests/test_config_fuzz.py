"""Fuzzing the config loader (hypothesis): whatever the file, `load_config` returns a config
that is safe to run with or raises ConfigError naming the key or the reason, never anything
else. And the hostile files a drill found (UTF-16, invalid UTF-8, 1,000 levels of nesting, a
5,000-character path, nan and infinity, NUL characters, a port of 99999, no positions, no
providers, an unparsable metrics address) are refused by `appliance check-config` in one line."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config import AppConfig, ConfigError, config_from_dict, load_config
from appliance.publish.mqtt import parse_url

# -- a TOML writer for generated documents (tomllib only reads) ---------------------------------


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string, except lone surrogates (then a syntax error)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_doc(doc: dict) -> str:
    lines = []
    for k, v in doc.items():
        lines.append(f"{json.dumps(k)} = {toml_value(v)}")
    return "\n".join(lines) + "\n"


# -- strategies: the config's own keys with hostile values, and junk ----------------------------

NASTY_TEXT = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", " ", "x\x00y", "a\nb", "\x7f", "pos-1", "off", "x", ":9108", "[::1]:0"]),
    st.sampled_from(["mqtt://h:99999", "mqtt://h:0", "mqtt://:1883", "mqtt://h:1883/x"]),
    st.sampled_from(["CPUExecutionProvider", "127.0.0.1:9108", "a" * 300, "a/" * 2500]),
)
SCALAR = st.one_of(
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 0.5, 65535, 65536, -1]),
    NASTY_TEXT,
)


def values(depth: int = 2):
    if depth == 0:
        return SCALAR
    return st.one_of(
        SCALAR,
        st.lists(values(depth - 1), max_size=3),
        st.dictionaries(NASTY_TEXT, values(depth - 1), max_size=3),
    )


def table_for(cls: type, depth: int = 0):
    """A table of `cls`'s keys (some of them), each with a plausible or a hostile value."""
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]

    def value_for(f):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) and depth < 2:
            return st.one_of(table_for(tp, depth + 1), values(1))
        if typing.get_origin(tp) is list:
            (item,) = typing.get_args(tp)
            if dataclasses.is_dataclass(item):
                return st.lists(table_for(item, depth + 1), max_size=3)
            return st.lists(SCALAR, max_size=3)
        default = f.default if f.default not in (dataclasses.MISSING, None) else None
        return SCALAR if default is None else st.one_of(SCALAR, st.just(default))

    keys = st.lists(st.sampled_from(fields), unique=True, max_size=len(fields))
    return keys.flatmap(
        lambda fs: st.fixed_dictionaries({f.name: value_for(f) for f in fs}).flatmap(
            lambda d: st.dictionaries(NASTY_TEXT, values(1), max_size=1).map(
                lambda junk: {**d, **junk}
            )
        )
    )


DOCS = st.one_of(
    table_for(AppConfig),
    table_for(AppConfig).map(lambda d: {k: v for k, v in d.items() if not isinstance(v, str)}),
)

CONTROL = {chr(c) for c in [*range(32), *range(127, 160)]}


def assert_safe(cfg: AppConfig) -> None:
    """What the rest of the box relies on once a config loaded."""

    def walk(obj, key=""):
        if dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                walk(getattr(obj, f.name), f"{key}.{f.name}")
        elif isinstance(obj, list):
            for i, x in enumerate(obj):
                walk(x, f"{key}[{i}]")
        elif isinstance(obj, float):
            assert math.isfinite(obj), key
        elif isinstance(obj, str) and key != ".base_dir":
            assert not CONTROL & set(obj), key

    walk(cfg)
    assert cfg.positions and cfg.emotion.providers
    assert cfg.paths.db.strip() and cfg.panel.host.strip()
    if cfg.mqtt.url:
        parse_url(cfg.mqtt.url)
    if cfg.daemon.metrics_listen != "off":
        assert 0 <= int(cfg.daemon.metrics_listen.rpartition(":")[2]) <= 65535
    cfg.resolve(cfg.paths.db)
    cfg.mqtt_resolved()


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(doc=DOCS)
def test_generated_configs_load_safely_or_name_the_key(tmp_path_factory, doc):
    p = tmp_path_factory.getbasetemp() / "fuzz.toml"
    p.write_text(toml_doc(doc), encoding="utf-8", errors="surrogatepass")
    try:
        cfg = load_config(p)
    except ConfigError as exc:
        assert exc.key and exc.reason and "\n" not in str(exc)
        return
    assert_safe(cfg)


@settings(max_examples=300, deadline=None, database=None)
@given(raw=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode())))
def test_any_bytes_load_or_give_a_reason(tmp_path_factory, raw):
    p = tmp_path_factory.getbasetemp() / "fuzz-bytes.toml"
    p.write_bytes(raw)
    try:
        assert_safe(load_config(p))
    except ConfigError as exc:
        assert exc.key in ("(file)", "(syntax)") or exc.reason


# -- the drill's hostile configs, through the CLI -----------------------------------------------

HOSTILE = {
    "utf16": ('[box]\nid = "b1"\n'.encode("utf-16"), "(file)", "UTF-16"),
    "latin1": ('[box]\nsite = "Zürich"\n'.encode("latin-1"), "(file)", "not UTF-8"),
    "nesting": (("x = " + "[" * 1500 + "]" * 1500).encode(), "(syntax)", "nested too deeply"),
    "inline-nesting": (("x = " + "{a = " * 1500 + "1" + "}" * 1500).encode(), "(syntax)", "nested"),
    "long-path": (f'[paths]\ndb = "{"d/" * 2500}x.db"\n'.encode(), "paths.db", "longer than"),
    "long-name": (f'[paths]\ndb = "{"d" * 300}.db"\n'.encode(), "paths.db", "component"),
    "nan-threshold": (b"[vad]\nthreshold_db = nan\n", "vad.threshold_db", "finite"),
    "nan-free-mb": (b"[retention]\nmin_free_mb = nan\n", "retention.min_free_mb", "finite"),
    "inf-days": (b"[retention]\ntranscripts_days = inf\n", "retention.transcripts_days", "finite"),
    "huge-int-float": (b"[vad]\npreroll = " + b"9" * 400 + b"\n", "vad.preroll", "finite"),
    "empty-db": (b'[paths]\ndb = ""\n', "paths.db", "must not be empty"),
    "empty-host": (b'[panel]\nhost = ""\n', "panel.host", "must not be empty"),
    "nul-site": (b'[box]\nsite = "a\\u0000b"\n', "box.site", "control characters"),
    "nul-path": (b'[paths]\nstate_dir = "/var/\\u0000x"\n', "paths.state_dir", "control"),
    "port-99999": (b'[mqtt]\nurl = "mqtt://broker:99999"\n', "mqtt.url", "out of range"),
    "no-positions": (b"positions = []\n", "positions", "at least 1"),
    "no-providers": (b"[emotion]\nproviders = []\n", "emotion.providers", "at least 1"),
    "metrics-x": (b'[daemon]\nmetrics_listen = "x"\n', "daemon.metrics_listen", "host:port"),
    "metrics-port": (
        b'[daemon]\nmetrics_listen = "127.0.0.1:70000"\n',
        "daemon.metrics_listen",
        "0-65535",
    ),
    "rule-call-type": (
        b'[[rules]]\nname = "r"\ncall_types = ["suport"]\n',
        "rules[0].call_types[0]",
        "must be one of",
    ),
    "big": (b"# " + b"x" * (1 << 20) + b"\n", "(file)", "larger than"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_config_is_refused_in_one_line(tmp_path, name):
    raw, key, reason = HOSTILE[name]
    p = tmp_path / "hostile.toml"
    p.write_bytes(raw)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert err.value.key == key and reason in err.value.reason, str(err.value)
    r = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "check-config", str(p)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"error: {p}: {key}:")


def test_unreadable_paths_are_reasons_not_tracebacks(tmp_path):
    for path, reason in [
        (tmp_path, "Is a directory"),
        (tmp_path / ("x" * 5000), "File name too long"),
        (tmp_path / "none.toml", "No such file"),
    ]:
        with pytest.raises(ConfigError, match=reason) as err:
            load_config(path)
        assert err.value.key == "(file)"
    with pytest.raises(ConfigError, match="embedded null"):
        load_config("a\x00b.toml")


def test_valid_edge_values_still_load():
    cfg = config_from_dict(
        {
            "daemon": {"metrics_listen": "[::1]:0"},
            "mqtt": {"url": "mqtts://broker.example:8883"},
            "rules": [{"name": "r", "call_types": ["sales"]}],
        }
    )
    assert_safe(cfg)
    assert config_from_dict({"daemon": {"metrics_listen": "off"}}).daemon.metrics_listen == "off"
