"""Whisper on an encoder window fitted to each utterance, with the real bundled model.

The speed-up only counts if accuracy holds: the agent lines of the bundled demo call (espeak-ng
speaking the script in scripts/make_demo_call.py), VAD-cut as the pipeline cuts them, are decoded
on their fitted windows and on faster-whisper's padded 30 s window, and both are scored against
the script.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.capture.wav import read_wav
from appliance.config import SttConfig, config_from_dict
from appliance.ops.demo import demo_calls
from appliance.segment.vad import Segmenter
from appliance.stt.base import DecodeHints
from appliance.stt.engines import create_transcriber
from appliance.stt.whisper import WhisperTranscriber, _token_cap
from appliance.stt.window import MAX_WINDOW_S, MIN_WINDOW_S, decode_utterance, window_seconds
from appliance.tools.bench_stt import wer


class EncodeSpy:
    """Stands in for the CTranslate2 model and records the frame count of every encode."""

    def __init__(self, model: Any):
        self._model = model
        self.frames: list[int] = []
        self._lock = threading.Lock()

    def encode(self, features: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.frames.append(int(features.shape[-1]))
        return self._model.encode(features, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def demo_script() -> list[tuple]:
    path = Path(__file__).resolve().parents[1] / "scripts" / "make_demo_call.py"
    spec = importlib.util.spec_from_file_location("make_demo_call", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.SCRIPT


@pytest.fixture(scope="module")
def whisper() -> WhisperTranscriber:
    return WhisperTranscriber(threads=1, workers=2)


@pytest.fixture(scope="module")
def agent_lines() -> list[np.ndarray]:
    call = demo_calls()[0]
    rec = read_wav(call.wav)
    chan = rec.channels[call.speakers.index("agent")]
    seg = Segmenter(rec.sample_rate)
    lines = [s.audio for s in seg.push(chan) + seg.flush()]
    assert rec.sample_rate == 16000 and len(lines) >= 5
    return lines


def test_window_is_fitted_and_bounded() -> None:
    assert window_seconds(0.3) == MIN_WINDOW_S
    assert window_seconds(9.0) == MIN_WINDOW_S
    assert window_seconds(9.2) == 11  # the speech plus a second of trailing silence
    assert window_seconds(12.0) == 13
    assert window_seconds(28.9) == MAX_WINDOW_S
    assert window_seconds(40.0) == MAX_WINDOW_S
    assert all(MIN_WINDOW_S <= window_seconds(d) <= MAX_WINDOW_S for d in np.linspace(0, 35, 71))


@pytest.fixture
def spy(whisper: WhisperTranscriber, monkeypatch: pytest.MonkeyPatch) -> EncodeSpy:
    spy = EncodeSpy(whisper._model.model)
    monkeypatch.setattr(whisper._model, "model", spy)
    return spy


@pytest.mark.slow
def test_fitted_window_keeps_the_words_of_the_30s_window(
    whisper: WhisperTranscriber, agent_lines: list[np.ndarray], spy: EncodeSpy
) -> None:
    fitted_text, padded_text = [], []
    for x in agent_lines:
        duration = x.size / 16000
        spy.frames.clear()
        fitted, words, truncated = decode_utterance(
            whisper._model,
            whisper._tokenizer("en"),
            x,
            beam_size=1,
            repetition_penalty=1.0,
            max_new_tokens=_token_cap(duration),
        )
        assert not truncated
        assert spy.frames == [window_seconds(duration) * 100]
        assert spy.frames[0] < 3000
        padded, _ = whisper._decode_long_form(x, duration, 1.0, "en", "")
        assert spy.frames[1:] == [3000]  # the long-form path pads to Whisper's 30 s
        fitted_text += fitted
        padded_text += padded
        # word timings come from the fitted window's alignment and stay inside the utterance
        assert words and all(0 <= w.start <= w.end <= duration + 1e-6 for w in words)
    script = " ".join(line[0] for line in demo_script())
    wer_fitted = wer([script], [" ".join(fitted_text)])
    wer_padded = wer([script], [" ".join(padded_text)])
    assert wer_fitted <= 0.08, (wer_fitted, fitted_text)
    assert wer_fitted <= wer_padded + 0.02, (wer_fitted, wer_padded)


@pytest.mark.slow
def test_a_context_prompt_is_no_loop(
    whisper: WhisperTranscriber, agent_lines: list[np.ndarray], spy: EncodeSpy
) -> None:
    """With the previous line as prompt the decode is not taken for a loop (Whisper may end it
    without a closing timestamp): one fitted-window encode per line, no long-form re-decode."""
    prev = whisper.transcribe(agent_lines[0], 16000).text
    for x in agent_lines[1:4]:
        spy.frames.clear()
        tr = whisper.transcribe(x, 16000, DecodeHints(language="en", context=prev))
        assert tr.text
        assert spy.frames == [window_seconds(x.size / 16000) * 100], "re-decoded as a loop"
        prev = tr.text


@pytest.mark.slow
def test_transcribe_uses_the_fitted_window(
    whisper: WhisperTranscriber, agent_lines: list[np.ndarray], spy: EncodeSpy
) -> None:
    tr = whisper.transcribe(agent_lines[0], 16000)
    assert tr.text and tr.final
    assert spy.frames == [window_seconds(agent_lines[0].size / 16000) * 100]


def test_one_model_worker_per_stt_thread() -> None:
    # With one CTranslate2 worker the pipeline's STT threads would queue behind each other.
    t = create_transcriber(SttConfig(engine="whisper", workers=3))
    assert isinstance(t, WhisperTranscriber)
    assert t.workers == 3 and t._model.model.num_workers == 3


def test_pipeline_stt_pool_follows_config(tmp_path) -> None:
    from appliance.pipeline.orchestrator import Pipeline
    from appliance.store.writer import Store

    cfg = config_from_dict({"box": {"id": "t"}, "stt": {"workers": 3}})
    store = Store(tmp_path / "a.db", box_id="t")
    pipe = Pipeline(cfg, store, emotion_model=None, transcriber=None)
    try:
        assert pipe._stt_exec._max_workers == 3
    finally:
        pipe.stop()
        store.close()


def test_a_sentence_said_twice_in_one_decode_is_a_loop() -> None:
    from appliance.stt.whisper import _looped

    once = "For example, you may create a project for call centers that use English in the United States."
    assert not _looped(once)
    assert not _looped("four one one one, five five five five")  # short: left to the token cap
    # base's repeat on custom_speech: the same sentence again, slightly garbled, too little for
    # the compression test alone
    assert _looped(
        once
        + " For example, you make create a project for call centers that use English in the United"
    )
    assert not _looped(
        once + " To create your first project, select the speech to text custom speech."
    )
