"""Emotion runtime (appliance.emotion) and emotion-eval: loading/verification, outputs, causality."""

from __future__ import annotations

import csv
import json
import shutil
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from appliance.types import EMOTION_LABELS

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "emotion"
RAVDESS = ROOT.parent / "shared" / "data" / "ravdess"

pytestmark = pytest.mark.skipif(
    not (MODEL_DIR / "model_card.json").exists(),
    reason="no trained emotion model in models/emotion/",
)


def _voice(seconds: float, sr: int, f0: float, seed: int, loud: float = 0.3) -> np.ndarray:
    """A crude voiced signal: harmonic series with vibrato and an amplitude envelope, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = f0 * (1 + 0.05 * np.sin(2 * np.pi * 4 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 12) if k * f0 < sr / 2 - 200)
    env = 0.5 * (1 - np.cos(2 * np.pi * np.minimum(t / seconds, 1))) + 0.1
    x = loud * env * x / np.max(np.abs(x)) + 0.003 * rng.standard_normal(len(t))
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def model():
    from appliance.emotion.model import EmotionModel

    return EmotionModel.load()


def _copy_model(tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(MODEL_DIR, dst)
    return dst


def test_bundled_model_loads_and_reports_info(model):
    card = json.loads((MODEL_DIR / "model_card.json").read_text())
    assert model.info["sha256"] == card["files"][card["model_file"]]
    assert model.info["providers"] == ["CPUExecutionProvider"]
    assert tuple(model.labels) == EMOTION_LABELS
    assert (MODEL_DIR / card["model_file"]).stat().st_size < 2_000_000


def test_refuses_tampered_model_file(tmp_path):
    from appliance.emotion.model import EmotionModel, ModelError

    d = _copy_model(tmp_path)
    card = json.loads((d / "model_card.json").read_text())
    f = d / card["model_file"]
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256"):
        EmotionModel.load(d)


@pytest.mark.parametrize("edit", ["temperature", "feature_name", "prior", "sha", "arousal"])
def test_refuses_tampered_card(tmp_path, edit):
    from appliance.emotion.model import EmotionModel, ModelError

    d = _copy_model(tmp_path)
    cp = d / "model_card.json"
    card = json.loads(cp.read_text())
    if edit == "temperature":
        card["spec"]["temperature"] = 0.5
    elif edit == "feature_name":
        card["spec"]["feature_names"][0] = "something_else"
    elif edit == "prior":
        card["spec"]["normalisation"]["8000"]["mean"][3] += 1.0
    elif edit == "arousal":
        card["spec"]["arousal_threshold"] = float(card["spec"].get("arousal_threshold", 0.0)) + 0.1
    else:
        card["files"][card["model_file"]] = "0" * 64
    cp.write_text(json.dumps(card))
    with pytest.raises(ModelError):
        EmotionModel.load(d)


def test_arousal_value_methods_and_threshold():
    from appliance.emotion.model import CIRCUMPLEX, arousal_value, make_result

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(len(EMOTION_LABELS)), size=50)
    high = [EMOTION_LABELS.index(k) for k in ("happy", "angry", "fearful", "disgust", "surprised")]
    s = 2 * probs[:, high].sum(1) - 1
    np.testing.assert_allclose(arousal_value(probs, method="class_sum"), s)
    # the threshold maps to 0, -1 and +1 stay put, the order of scores is kept
    for t in (-0.3, 0.2):
        a = arousal_value(probs, method="class_sum", threshold=t)
        assert np.array_equal(a > 0, s > t)
        assert np.all(np.diff(a[np.argsort(s)]) >= -1e-12)
        np.testing.assert_allclose(
            arousal_value(np.eye(7)[[0, 3]], method="class_sum", threshold=t), [-1, 1]
        )
    # a card without an arousal method: the circumplex expectation (models before 1.1)
    av = np.array([CIRCUMPLEX[k][0] for k in EMOTION_LABELS])
    r = make_result(probs[0], 0.5, 0.5)
    assert r.arousal == pytest.approx(float(np.clip(probs[0] @ av, -1, 1)))
    r = make_result(probs[0], 0.5, 0.5, 0.9, 0.5)
    assert r.arousal == pytest.approx(0.5 * float(probs[0] @ av) + 0.5 * 0.8)


def test_missing_card_is_a_model_error(tmp_path):
    from appliance.emotion.model import EmotionModel, ModelError

    with pytest.raises(ModelError):
        EmotionModel.load(tmp_path)


@pytest.mark.parametrize("sr", [8000, 16000])
def test_infer_output_ranges(model, sr):
    st = model.new_state()
    for i, f0 in enumerate((110.0, 220.0, 160.0)):
        r = model.infer(_voice(1.2, sr, f0, i), sr, st)
        assert r.label in EMOTION_LABELS
        assert 0.0 <= r.confidence <= 1.0
        assert 0.0 <= r.intensity <= 1.0
        assert -1.0 <= r.arousal <= 1.0 and -1.0 <= r.valence <= 1.0
        assert len(r.probabilities) == len(EMOTION_LABELS)
        assert abs(sum(r.probabilities) - 1.0) < 1e-4
        assert r.confidence == pytest.approx(max(r.probabilities))
        # below the threshold always uncertain; a 1.3+ card also marks short utterances and
        # inputs far from the training data (as these synthetic voices are) uncertain
        assert r.uncertain or r.confidence >= model.threshold
    assert st.n == 3


def test_rejects_unsupported_rate(model):
    with pytest.raises(ValueError):
        model.infer(_voice(1.0, 16000, 150, 0), 44100, model.new_state())


def test_state_is_causal(model):
    """Utterance k is scored only with what came before it: the future never changes it."""
    sr = 16000
    utts = [
        _voice(1.0, sr, f0, i, loud)
        for i, (f0, loud) in enumerate([(120, 0.2), (200, 0.5), (150, 0.1), (260, 0.6)])
    ]
    other = _voice(1.0, sr, 90, 99, 0.05)
    a, b = model.new_state(), model.new_state()
    ra = [model.infer(u, sr, a) for u in utts]
    rb = [model.infer(u, sr, b) for u in utts[:2]] + [model.infer(other, sr, b)]
    assert ra[0] == rb[0] and ra[1] == rb[1]
    # and the past does matter: the same utterance scored fresh differs from scored in context
    fresh = model.infer(utts[3], sr, model.new_state())
    # (intensity and arousal are the model's own outputs; synthetic voices are far out of
    # distribution, so their label probabilities are pulled all the way to the deployment prior)
    assert (fresh.intensity, fresh.arousal) != (ra[3].intensity, ra[3].arousal)


def test_concurrent_infer_matches_sequential(model):
    sr = 8000
    clips = [
        [_voice(0.8, sr, 100 + 20 * k + 7 * j, 10 * k + j) for j in range(3)] for k in range(4)
    ]
    want = []
    for seq in clips:
        st = model.new_state()
        want.append([model.infer(x, sr, st) for x in seq])
    got: dict[int, list] = {}

    def worker(k):
        st = model.new_state()
        got[k] = [model.infer(x, sr, st) for x in clips[k]]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[k] for k in range(4)] == want


def _write_wav(path: Path, x: np.ndarray, sr: int) -> None:
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


def test_emotion_eval_path_only_manifest(tmp_path, capsys):
    from appliance.tools.emotion_eval import main

    (tmp_path / "a").mkdir()
    _write_wav(tmp_path / "a" / "angry_strong.wav", _voice(1.0, 8000, 180, 1), 8000)
    _write_wav(tmp_path / "b.wav", _voice(1.0, 16000, 120, 2), 16000)
    _write_wav(tmp_path / "c.wav", _voice(1.0, 22050, 140, 3), 22050)  # resampled to 16 kHz
    man = tmp_path / "m.csv"
    man.write_text("path\na/angry_strong.wav\nb.wav\nc.wav\n")
    assert main(["--manifest", str(man), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 3
    assert out["uar"] is None and out["accuracy"] is None and out["arousal_uar"] is None
    assert [p["path"] for p in out["predictions"]] == ["a/angry_strong.wav", "b.wav", "c.wav"]
    for p in out["predictions"]:
        assert p["label"] in EMOTION_LABELS
        assert set(p) == {
            "path",
            "label",
            "confidence",
            "intensity",
            "arousal",
            "valence",
            "uncertain",
        }


def test_emotion_eval_labelled_manifest_with_calls(tmp_path, model):
    from appliance.tools.emotion_eval import evaluate

    rows = []
    for i, (emo, f0, loud) in enumerate(
        [("anger", 220, 0.6), ("sadness", 100, 0.1), ("boredom", 110, 0.1), ("neutral", 130, 0.2)]
    ):
        name = f"x{i}.wav"
        _write_wav(tmp_path / name, _voice(1.0, 16000, f0, i, loud), 16000)
        rows.append({"path": name, "emotion": emo, "call": "c1" if i < 2 else "c2"})
    man = tmp_path / "m.csv"
    with man.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "emotion", "call"])
        w.writeheader()
        w.writerows(rows)
    res = evaluate(man, model)
    assert res["n"] == 4
    assert res["n_labelled"] == 3  # boredom is outside the model's labels
    assert 0.0 <= res["uar"] <= 1.0 and 0.0 <= res["arousal_uar"] <= 1.0
    assert np.array(res["confusion"]).sum() == 3
    # rows of one call share a causal state: the second row of call c1 is scored in context
    st = model.new_state()
    from appliance.tools.emotion_eval import read_audio

    r0 = model.infer(*read_audio(tmp_path / "x0.wav"), st)
    r1 = model.infer(*read_audio(tmp_path / "x1.wav"), st)
    assert res["predictions"][0]["confidence"] == round(r0.confidence, 4)
    assert res["predictions"][1]["confidence"] == round(r1.confidence, 4)


@pytest.mark.shared
@pytest.mark.skipif(not (RAVDESS / "manifest.csv").exists(), reason="../shared RAVDESS not present")
def test_ravdess_angry_strong_more_aroused_than_sad(model):
    from appliance.tools.emotion_eval import read_audio

    with (RAVDESS / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    pick = {"angry": [], "sad": []}
    for r in rows:
        if r["emotion"] in pick and r["intensity"] == "strong" and len(pick[r["emotion"]]) < 6:
            pick[r["emotion"]].append(r["path"])
    mean = {}
    for emo, paths in pick.items():
        vals = [model.infer(*read_audio(RAVDESS / p), model.new_state()).arousal for p in paths]
        mean[emo] = float(np.mean(vals))
    assert mean["angry"] > mean["sad"] + 0.2, mean


def test_unavailable_gpu_provider_falls_back_to_cpu_with_a_warning(caplog):
    """A Jetson config (CUDA first) on a CPU-only box still runs; nothing may need the GPU."""
    import logging

    import onnxruntime as ort

    from appliance.emotion.model import EmotionModel

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA: the fallback cannot be observed")
    with caplog.at_level(logging.WARNING, logger="appliance.emotion"):
        m = EmotionModel.load(providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert m.info["providers"] == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider" in caplog.text
