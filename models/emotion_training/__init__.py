"""Training recipe of the appliance's emotion model (training-time only: torch, scipy, sklearn,
onnx, soundfile, tqdm, matplotlib).

Modules, in the order the recipe uses them:
- `channel`: simulated channels the box hears (headset, telephone, speed-perturbed copies);
- `data`: manifest, clip variants, cached raw features through the runtime path;
- `calls`: normalisation priors, (pseudo-)calls, causal per-call normalisation;
- `network`: MLP members (torch) and the per-rate shrinkage LDA;
- `export`: ONNX graph, static int8 quantisation;
- `metrics`: UAR, ECE, temperature, the cross-fitted arousal rule;
- `cv`: speaker-grouped cross-validation through the exported files;
- `latency`, `card`, `card_md`: latency, the model card and its Markdown;
- `pipeline`: `train()`, the whole recipe; `cli`: `models/train_emotion.py`'s options.
"""

from appliance.emotion import model as E

from .calls import fit_priors, make_calls, normalise_calls, training_set
from .config import CALL_SIZE, LABELS, MODEL_VERSION, N_CLS, Config
from .data import Clip, embedding_spec, extract, load_manifest, variant_audio, variant_job
from .metrics import (
    apply_temperature,
    arousal_cv,
    choose_arousal_rule,
    choose_arousal_threshold,
    fit_temperature,
    uar,
)
from .pipeline import train

__all__ = [
    "CALL_SIZE",
    "LABELS",
    "MODEL_VERSION",
    "N_CLS",
    "Clip",
    "Config",
    "E",
    "apply_temperature",
    "arousal_cv",
    "choose_arousal_rule",
    "choose_arousal_threshold",
    "embedding_spec",
    "extract",
    "fit_priors",
    "fit_temperature",
    "load_manifest",
    "make_calls",
    "normalise_calls",
    "train",
    "training_set",
    "uar",
    "variant_audio",
    "variant_job",
]
