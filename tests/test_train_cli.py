"""`appliance train-emotion`: a site retrains on its own labelled calls with one command."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RAVDESS = ROOT.parent / "shared" / "data" / "ravdess"


def test_options_reach_the_training_script(monkeypatch):
    import subprocess

    from appliance import cli

    seen = {}

    def fake_run(argv, check):
        seen.update(argv=list(argv))
        return subprocess.CompletedProcess(argv, 3)

    monkeypatch.setattr(subprocess, "run", fake_run)
    rc = cli.main(["train-emotion", "--data", "m.csv", "--out", "d", "--quick", "--folds", "3"])
    assert rc == 3  # the script's exit status is the command's
    assert seen["argv"][0] == sys.executable
    assert seen["argv"][1].endswith("models/train_emotion.py")
    assert seen["argv"][2:] == ["--data", "m.csv", "--out", "d", "--quick", "--folds", "3"]


def test_training_script_runs_without_path_edits():
    """The thin script imports its package from models/ as a script does (no sys.path edit)."""
    import subprocess

    script = ROOT / "models" / "train_emotion.py"
    assert "sys.path" not in script.read_text()
    out = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "--quick" in out.stdout


def test_unknown_options_of_other_commands_are_still_refused(capsys):
    from appliance import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["check-config", "--bogus"])
    assert exc.value.code == 2
    assert "--bogus" in capsys.readouterr().err


@pytest.mark.shared
@pytest.mark.skipif(not (RAVDESS / "manifest.csv").exists(), reason="../shared RAVDESS absent")
def test_site_retrain_produces_a_model_the_runtime_loads(tmp_path):
    pytest.importorskip("torch")  # the training extra: pip install -e ".[train]"
    pytest.importorskip("sklearn")
    from appliance import cli
    from appliance.emotion.model import EmotionModel

    rows = list(csv.DictReader((RAVDESS / "manifest.csv").open(newline="")))
    keep = []
    for spk in ("ravdess_01", "ravdess_02", "ravdess_03"):
        keep += [r for r in rows if r["speaker"] == spk][::3]  # 20 clips each
    for r in keep:
        r["path"] = str(RAVDESS / r["path"])
    man = tmp_path / "site.csv"
    with man.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(keep[0]))
        w.writeheader()
        w.writerows(keep)
    out = tmp_path / "model"
    rc = cli.main(
        ["train-emotion", "--data", str(man), "--out", str(out), "--quick", "--folds", "3"]
        + ["--cache", str(tmp_path / "cache")]
    )
    assert rc == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["training"]["n_clips"] == len(keep)
    assert len(card["cv"]["folds"]) == 3
    model = EmotionModel.load(out)
    assert model.embedder is not None
    r = model.infer(*_read(keep[0]["path"]), model.new_state())
    assert r.label in card["spec"]["labels"]


def _read(path: str):
    from appliance.tools.emotion_eval import read_audio

    return read_audio(Path(path))
