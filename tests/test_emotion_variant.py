"""`[emotion] variant` picks the fp32 or int8 file of the bundled card, each verified by its hash."""

from __future__ import annotations

import json

import pytest

from appliance.config import ConfigError, config_from_dict
from appliance.emotion.model import bundled_dir
from appliance.ops.engines import load_engines


@pytest.mark.parametrize("variant", ["", "fp32", "int8"])
def test_variant_selects_the_card_file(variant: str) -> None:
    card = json.loads((bundled_dir() / "model_card.json").read_text())
    cfg = config_from_dict({"emotion": {"variant": variant}, "stt": {"engine": "none"}})
    engines = load_engines(cfg, with_stt=False)
    expected = card["variants"][variant] if variant else card["model_file"]
    assert engines.emotion.model_path.name == expected
    res = engines.emotion.infer(*_tone(), engines.emotion.new_state())
    assert 0.0 <= res.confidence <= 1.0 and -1.0 <= res.arousal <= 1.0


def test_unknown_variant_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"emotion": {"variant": "fp16"}})
    assert "emotion.variant" in str(err.value)


def _tone():
    import numpy as np

    t = np.arange(16000) / 16000
    return (0.1 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000
