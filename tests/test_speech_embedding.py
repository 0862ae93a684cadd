"""Speech embedding of the emotion model (appliance.emotion.embedding): the real bundled encoder."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest

from appliance.emotion.embedding import EMBEDDING_KIND, EmbeddingError, SpeechEmbedder

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "emotion"
SPEECH = ROOT.parent / "shared" / "data" / "speech"


def _voice(seconds: float, sr: int, f0: float, loud: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 4 * t))) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 10) if k * f0 < sr / 2 - 200)
    return (loud * x / np.max(np.abs(x))).astype(np.float32)


@pytest.fixture(scope="module")
def embedder() -> SpeechEmbedder:
    return SpeechEmbedder(min_window_s=10)


def test_embedding_shape_names_and_determinism(embedder):
    x = _voice(1.5, 16000, 150)
    a, b = embedder.embed(x, 16000), embedder.embed(x, 16000)
    assert a.shape == (embedder.dim,) == (768,)
    assert len(embedder.names()) == embedder.dim
    assert np.isfinite(a).all() and np.array_equal(a, b)
    assert (a[embedder.dim // 2 :] >= 0).all()  # the second half are standard deviations


def test_embedding_follows_the_voice_not_the_padding(embedder):
    low, high = (
        embedder.embed(_voice(2.0, 16000, 110), 16000),
        embedder.embed(_voice(2.0, 16000, 260, 0.6), 16000),
    )
    again = embedder.embed(_voice(2.0, 16000, 112), 16000)
    assert np.linalg.norm(low - again) < np.linalg.norm(low - high)


def test_phone_rate_is_resampled_to_the_encoder_rate(embedder):
    from appliance.capture.resample import resample

    x16 = _voice(1.5, 16000, 150)
    x8 = np.asarray(resample(x16, 16000, 8000), dtype=np.float32)
    e16, e8 = embedder.embed(x16, 16000), embedder.embed(x8, 8000)
    other = embedder.embed(_voice(1.5, 16000, 300, 0.6), 16000)
    assert np.linalg.norm(e8 - e16) < np.linalg.norm(other - e16)


def test_window_policy(embedder):
    assert embedder.window_seconds(0.4) == 10
    assert embedder.window_seconds(12.2) == 13
    assert embedder.window_seconds(95.0) == 30
    short = SpeechEmbedder(min_window_s=1)
    assert short.window_seconds(2.1) == 3
    # another window is another embedding: the card pins the window
    x = _voice(2.0, 16000, 150)
    assert not np.allclose(short.embed(x, 16000), embedder.embed(x, 16000))


def test_rejects_bad_input(embedder):
    with pytest.raises(ValueError):
        embedder.embed(np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError):
        embedder.embed(np.zeros((2, 100), np.float32), 16000)
    with pytest.raises(EmbeddingError):
        SpeechEmbedder(min_window_s=0)


def test_from_spec_refuses_another_encoder_or_kind(embedder):
    spec = embedder.spec
    assert SpeechEmbedder.from_spec(spec).model_sha256 == spec["model_sha256"]
    with pytest.raises(EmbeddingError, match="trained with"):
        SpeechEmbedder.from_spec({**spec, "model_sha256": "0" * 64})
    with pytest.raises(EmbeddingError, match="kind"):
        SpeechEmbedder.from_spec({**spec, "kind": "wav2vec2"})
    with pytest.raises(EmbeddingError, match="dim"):
        SpeechEmbedder.from_spec({**spec, "dim": 512})


def _embed_in_child(q) -> None:
    q.put(SpeechEmbedder(min_window_s=10).embed(_voice(1.0, 16000, 150), 16000))


def test_a_forked_worker_loads_its_own_encoder(embedder):
    """The training script extracts embeddings in forked workers after the parent loaded the
    encoder; the child must not use (or hang on) the parent's CTranslate2 model."""
    want = embedder.embed(_voice(1.0, 16000, 150), 16000)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_embed_in_child, args=(q,))
    p.start()
    got = q.get(timeout=60)
    p.join(timeout=30)
    assert p.exitcode == 0
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.skipif(not (MODEL_DIR / "model_card.json").exists(), reason="no trained model")
def test_shipped_model_uses_the_embedding_and_refuses_another(tmp_path):
    from appliance.emotion.model import EmotionModel, ModelError

    card = json.loads((MODEL_DIR / "model_card.json").read_text())
    emb = card["spec"]["embedding"]
    assert emb["kind"] == EMBEDDING_KIND
    model = EmotionModel.load()
    assert model.embedder is not None and model.embedder.spec == emb
    assert card["spec"]["feature_names"][-emb["dim"] :] == model.embedder.names()
    d = tmp_path / "model"
    shutil.copytree(MODEL_DIR, d)
    card["spec"]["embedding"]["min_window_s"] = 1
    (d / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError):
        EmotionModel.load(d)


@pytest.mark.shared
@pytest.mark.skipif(not (SPEECH / "librivox").is_dir(), reason="../shared speech not present")
def test_real_speech_clips_closer_to_each_other_than_to_a_tone(embedder):
    from appliance.tools.emotion_eval import read_audio

    wavs = sorted((SPEECH / "librivox").glob("*.wav"))[:2]
    e = [embedder.embed(*_first_seconds(*read_audio(p), 4.0)) for p in wavs]
    tone = embedder.embed(_voice(4.0, 16000, 150), 16000)
    d = np.linalg.norm(e[0] - e[1])
    assert d < min(np.linalg.norm(e[0] - tone), np.linalg.norm(e[1] - tone))


def _first_seconds(x: np.ndarray, sr: int, s: float) -> tuple[np.ndarray, int]:
    return x[: int(s * sr)], sr
