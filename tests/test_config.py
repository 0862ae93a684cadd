import subprocess
import sys

import pytest

from appliance.config import AppConfig, ConfigError, config_from_dict, describe, load_config


def test_defaults_are_valid():
    cfg = config_from_dict({})
    assert cfg == AppConfig()
    assert cfg.policy.agent_emotion is False  # EU AI Act default


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"stt": {"engnie": "vosk"}}, "stt.engnie"),
        ({"stt": {"engine": "google"}}, "stt.engine"),
        ({"vad": {"hangover": "long"}}, "vad.hangover"),
        ({"vad": {"hangover": 99}}, "vad.hangover"),
        (
            {"positions": [{"id": "a"}, {"id": "a", "channels": {"agent": 0, "customer": 1}}]},
            "positions[1].id",
        ),
        (
            {"positions": [{"id": "a", "channels": {"agent": 1, "customer": 1}}]},
            "positions[0].channels.customer",
        ),
        (
            {"positions": [{"id": "a", "channels": {"agent": 0, "customer": -1}}]},
            "positions[0].channels.customer",
        ),
        ({"box": {"id": "has space"}}, "box.id"),
        ({"mqtt": {"url": "http://x"}}, "mqtt.url"),
        ({"policy": {"agent_emotion": "yes"}}, "policy.agent_emotion"),
        ({"rules": [{"name": "r1", "signal": "mood"}]}, "rules[0].signal"),
        ({"emotion": {"providers": ["GPU"]}}, "emotion.providers[0]"),
        ({"box": 3}, "box"),
    ],
)
def test_invalid_values_name_the_key(doc, key):
    with pytest.raises(ConfigError) as e:
        config_from_dict(doc)
    assert e.value.key == key
    assert str(e.value).startswith(key + ":")


def test_relative_paths_resolve_against_config_folder(tmp_path):
    p = tmp_path / "a.toml"
    p.write_text('[paths]\ndb = "data/x.db"\n')
    cfg = load_config(p)
    assert cfg.resolve(cfg.paths.db) == tmp_path / "data" / "x.db"


def test_syntax_error_is_reported(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[box\nid=")
    with pytest.raises(ConfigError, match="syntax"):
        load_config(p)


def test_every_field_is_documented():
    rows = describe()
    assert len(rows) > 50
    assert all(help_ for _, _, help_ in rows)


def test_check_config_cli(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[box]\nid = "b1"\n[mqtt]\nca_file = "missing-ca.pem"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[box]\nid = "b1"\ncolour = "red"\n')

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "appliance.cli", "check-config", *a],
            capture_output=True,
            text=True,
        )

    r = run(str(good))
    assert r.returncode == 0 and "warning: mqtt.ca_file" in r.stderr
    r = run(str(good), "--strict")
    assert r.returncode == 1 and "error: mqtt.ca_file" in r.stderr
    r = run(str(bad))
    assert r.returncode == 1 and "box.colour" in r.stderr


def test_emotion_prior_is_seven_non_negative_numbers():
    cfg = config_from_dict({"emotion": {"prior": [8, 1, 1, 1, 1, 1, 1]}})
    assert cfg.emotion.prior == [8.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert AppConfig().emotion.prior == []
    for bad in ([1, 2, 3], [0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, -1]):
        with pytest.raises(ConfigError) as exc:
            config_from_dict({"emotion": {"prior": bad}})
        assert exc.value.key == "emotion.prior"
