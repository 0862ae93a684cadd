"""Put a realism benchmark result into a model card (JSON and Markdown).

    appliance bench realism --out /tmp/realism.json
    python -m emotion_training.realism_card --card models/emotion --bench /tmp/realism.json

The benchmark needs the exported model (it runs the live pipeline), so it runs after training;
the card's `realism` section sits outside `spec` (the ONNX files' digest does not cover it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from appliance.tools.bench_realism import markdown_table

from .card_md import render_card_md

KEYS = (
    "customer_utterances",
    "confident_non_neutral",
    "negative_labels",
    "negative_labels_incl_uncertain",
    "uncertain",
    "confident_short",
    "backchannels",
    "confident_backchannels",
    "calm_alerts_per_hour",
    "calm_sentiment_alerts_per_hour",
    "valence_vs_text",
    "label_distribution",
)


def attach(card_dir: Path, bench: dict, command: str) -> dict:
    """Write the benchmark's per-set figures and table into the card; returns the card."""
    path = card_dir / "model_card.json"
    card = json.loads(path.read_text())
    card["realism"] = {
        "command": command,
        "sets": {k: {m: v[m] for m in KEYS} for k, v in bench["sets"].items()},
        "left_out_trained_on": bench.get("left_out_trained_on", []),
        "table": markdown_table(bench),
    }
    path.write_text(json.dumps(card, indent=1) + "\n")
    (card_dir / "MODEL_CARD.md").write_text(render_card_md(card))
    return card


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--card", type=Path, required=True, help="model directory")
    ap.add_argument("--bench", type=Path, required=True, help="bench realism --out JSON")
    ap.add_argument("--command", default="appliance bench realism", help="how it was run")
    a = ap.parse_args(argv)
    attach(a.card, json.loads(a.bench.read_text()), a.command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
