"""Customer emotion from one utterance: frontend statistics -> causal per-call normalisation -> ONNX.

Pipeline per utterance (identical in training, evaluation and live analysis; training imports
`utterance_features` and `ChannelState` from here, so there is one implementation):

1. `utterance_features(x, sr)`: statistics over the active frames (within 30 dB of the loudest
   frame) of the runtime frontend's 40-band log-mel and 13 MFCCs (mean, std, std of deltas),
   frame-energy statistics, every value of `features.functionals` (in `FUNCTIONAL_NAMES` order), and
   voiced/unvoiced (`yin_pitch`) and temporal (thirds of the utterance) MFCC, pitch and energy statistics.
   Models from 1.2 on append a speech embedding (`appliance.emotion.embedding`: mean and standard
   deviation of the bundled Whisper tiny.en encoder's frames over the utterance; the card pins the
   encoder's hash and window). `raw_features` builds the whole raw vector.
2. `ChannelState`: running causal normalisation per call channel. Utterance k of a call is
   z-scored with the mean/variance of utterances 0..k-1 of that call, shrunk towards a prior from
   the training set (per sample rate); only then are the statistics updated with utterance k.
3. The ONNX model (small MLP ensemble, temperature scaling baked in) maps
   [z-scored features, globally scaled features, is_8k flag] to calibrated class probabilities and
   an intensity head (trained on RAVDESS normal/strong).
4. Valence: a circumplex mapping of the calibrated class probabilities (`CIRCUMPLEX`; expectation
   over classes). Arousal (`arousal_value`, method/weights/threshold from the card): 2 * P(any
   high-arousal class) - 1 ("class_sum") or the circumplex arousal expectation (cards without
   `arousal_method`), optionally averaged with the model's trained arousal head (2 * P(high) - 1),
   with the decision threshold chosen out-of-fold in training mapped to 0.

`EmotionModel.load()` verifies the SHA-256 of the ONNX file against `model_card.json`, the card's
spec against the digest embedded in the ONNX metadata, the feature names against the running
frontend, and the speech encoder against the card's `embedding` section; any mismatch raises
`ModelError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.emotion.frontend import (  # re-exported: training and tests use them from here
    ACTIVE_RANGE_NATS,
    FEATURE_VERSION,
    MIN_ACTIVE_FRAMES,
    N_MELS,
    N_MFCC,
    feature_names,
    utterance_features,
)
from appliance.types import EMOTION_LABELS, EmotionResult

log = logging.getLogger(__name__)

__all__ = [
    "ACTIVE_RANGE_NATS",
    "CIRCUMPLEX",
    "FEATURE_VERSION",
    "MIN_ACTIVE_FRAMES",
    "N_MELS",
    "N_MFCC",
    "ChannelState",
    "EmotionModel",
    "ModelError",
    "NormPrior",
    "arousal_value",
    "circumplex",
    "feature_names",
    "make_result",
    "raw_features",
    "utterance_features",
]

SAMPLE_RATES: tuple[int, ...] = (8000, 16000)
Z_CLIP = 6.0

# Circumplex coordinates (arousal, valence) per label, after Russell (1980) and the usual placement of
# the basic emotions; neutral sits slightly on the low-arousal side (calm is merged into neutral).
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "neutral": (-0.3, 0.0),
    "happy": (0.6, 0.8),
    "sad": (-0.6, -0.7),
    "angry": (0.8, -0.7),
    "fearful": (0.6, -0.6),
    "disgust": (0.3, -0.7),
    "surprised": (0.7, 0.3),
}


class ModelError(RuntimeError):
    """The emotion model files are missing, tampered with or do not match this frontend."""


# ----------------------------------------------------------------------------- features


def model_input_names(spec: dict) -> list[str]:
    """Raw feature names a model card's spec expects: the frontend's, then its embedding's (if any)."""
    from appliance.emotion.embedding import embedding_names

    emb = spec.get("embedding")
    return feature_names() + (embedding_names(int(emb["dim"])) if emb else [])


def raw_features(x: np.ndarray, sr: int, embedder: Any | None = None) -> np.ndarray:
    """Raw model input of one utterance: `utterance_features`, then the speech embedding if the
    model has one (`appliance.emotion.embedding.SpeechEmbedder`). Training calls this too."""
    f = utterance_features(x, sr)
    return f if embedder is None else np.concatenate([f, embedder.embed(x, sr)])


# ----------------------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class NormPrior:
    """Per-sample-rate prior for the running normalisation (from the training set)."""

    mean: np.ndarray  # global mean of the raw features
    var: np.ndarray  # pooled within-speaker variance (what a call's running variance converges to)
    gvar: np.ndarray  # total variance (scales the global branch)
    n0_mean: float = 4.0  # prior strength, in utterances, for the running mean
    n0_var: float = 12.0  # prior strength, in utterances, for the running variance

    def to_json(self) -> dict:
        return {
            "mean": [float(v) for v in self.mean],
            "var": [float(v) for v in self.var],
            "gvar": [float(v) for v in self.gvar],
            "n0_mean": self.n0_mean,
            "n0_var": self.n0_var,
        }

    @classmethod
    def from_json(cls, d: dict) -> NormPrior:
        return cls(
            np.asarray(d["mean"], dtype=np.float64),
            np.asarray(d["var"], dtype=np.float64),
            np.asarray(d["gvar"], dtype=np.float64),
            float(d["n0_mean"]),
            float(d["n0_var"]),
        )


class ChannelState:
    """Running causal feature statistics of one call channel (customer side of one call).

    `normalise(f)` uses only utterances already `update`d; `EmotionModel.infer` scores first and
    updates afterwards. A lock makes concurrent use from several threads safe (the pipeline uses one
    state per call channel from one thread anyway).
    """

    def __init__(self, priors: dict[int, NormPrior]):
        self._priors = priors
        self._lock = threading.Lock()
        self.sr: int | None = None
        self.n = 0
        self._s1: np.ndarray | None = None
        self._s2: np.ndarray | None = None

    def _reset(self, sr: int) -> None:
        self.sr, self.n, self._s1, self._s2 = sr, 0, None, None

    def normalise(self, f: np.ndarray, sr: int) -> np.ndarray:
        """Model input for raw features `f` of an utterance at `sr`, given the past of the call."""
        with self._lock:
            if self.sr != sr:
                self._reset(sr)
            p = self._priors[sr]
            k = self.n
            if k == 0:
                mu, var = p.mean, p.var
            else:
                m_call = self._s1 / k
                v_call = np.maximum(self._s2 / k - m_call**2, 0.0)
                mu = (p.n0_mean * p.mean + self._s1) / (p.n0_mean + k)
                var = (p.n0_var * p.var + k * v_call) / (p.n0_var + k)
            var = np.maximum(var, 1e-3 * p.var + 1e-12)
        z = np.clip((f - mu) / np.sqrt(var), -Z_CLIP, Z_CLIP)
        g = np.clip((f - p.mean) / np.sqrt(p.gvar + 1e-12), -Z_CLIP, Z_CLIP)
        flag = np.array([1.0 if sr == 8000 else 0.0])
        return np.concatenate([z, g, flag]).astype(np.float32)

    def update(self, f: np.ndarray, sr: int) -> None:
        with self._lock:
            if self.sr != sr:
                self._reset(sr)
            if self._s1 is None:
                self._s1 = np.zeros_like(f, dtype=np.float64)
                self._s2 = np.zeros_like(f, dtype=np.float64)
            self._s1 += f
            self._s2 += f * f
            self.n += 1


# ----------------------------------------------------------------------------- outputs


def circumplex(probs: np.ndarray) -> tuple[float, float]:
    """(arousal, valence) in [-1, 1]: probability-weighted circumplex coordinates."""
    av = np.array([CIRCUMPLEX[lab] for lab in EMOTION_LABELS])
    a, v = np.asarray(probs, dtype=np.float64) @ av
    return float(np.clip(a, -1, 1)), float(np.clip(v, -1, 1))


HIGH_AROUSAL_LABELS: tuple[str, ...] = ("happy", "angry", "fearful", "disgust", "surprised")


def arousal_value(
    probs: np.ndarray,
    arousal_high: np.ndarray | float | None = None,
    head_weight: float = 0.0,
    method: str = "circumplex",
    threshold: float = 0.0,
    high_labels: tuple[str, ...] | list[str] = HIGH_AROUSAL_LABELS,
) -> np.ndarray:
    """Arousal in [-1, 1] (> 0 = high) from calibrated class probabilities [n, 7] (or [7]).

    `method` (the card's `spec.arousal_method`; absent = "circumplex"):
    - "circumplex": expectation of the circumplex arousal coordinate over the classes;
    - "class_sum": 2 * P(any high-arousal class) - 1, summed over `high_labels`.
    Then, when the model has a trained arousal head, (1 - w) * that + w * (2 * P(high) - 1); then the
    decision threshold `threshold` (chosen on out-of-fold scores in training) is mapped to 0 by a
    piecewise-linear rescale that keeps -1 and +1 fixed.
    """
    p = np.asarray(probs, dtype=np.float64)
    if method == "class_sum":
        idx = [EMOTION_LABELS.index(lab) for lab in high_labels]
        a = 2.0 * p[..., idx].sum(-1) - 1.0
    elif method == "circumplex":
        a = p @ np.array([CIRCUMPLEX[lab][0] for lab in EMOTION_LABELS])
    else:
        raise ValueError(f"unknown arousal method {method!r}")
    a = np.clip(a, -1, 1)
    if arousal_high is not None and head_weight > 0:
        ah = np.asarray(arousal_high, dtype=np.float64)
        a = np.clip((1 - head_weight) * a + head_weight * (2 * ah - 1), -1, 1)
    t = float(np.clip(threshold, -0.99, 0.99))
    if t != 0.0:
        a = np.where(a >= t, (a - t) / (1 - t), (a - t) / (1 + t))
    return np.clip(a, -1, 1)


def make_result(
    probs: np.ndarray,
    intensity: float,
    threshold: float,
    arousal_high: float | None = None,
    head_weight: float = 0.0,
    *,
    arousal_method: str = "circumplex",
    arousal_threshold: float = 0.0,
    high_labels: tuple[str, ...] | list[str] = HIGH_AROUSAL_LABELS,
    arousal_probs: np.ndarray | None = None,
) -> EmotionResult:
    """EmotionResult from calibrated probabilities; arousal by `arousal_value` with the card's
    method, head weight and decision threshold (defaults: the circumplex expectation), from
    `arousal_probs` when given (the model's own probabilities, before a deployment prior: the
    arousal threshold was chosen on them)."""
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum()
    i = int(np.argmax(probs))
    _, v = circumplex(probs)
    ap = probs if arousal_probs is None else np.asarray(arousal_probs, dtype=np.float64)
    a = float(
        arousal_value(ap, arousal_high, head_weight, arousal_method, arousal_threshold, high_labels)
    )
    conf = float(probs[i])
    return EmotionResult(
        label=EMOTION_LABELS[i],
        confidence=conf,
        intensity=float(np.clip(intensity, 0.0, 1.0)),
        arousal=a,
        valence=v,
        uncertain=conf < threshold,
        probabilities=tuple(float(p) for p in probs),
    )


# ----------------------------------------------------------------------------- model


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def spec_digest(spec: dict) -> str:
    """SHA-256 of the canonical JSON of the card's `spec` (embedded in the ONNX metadata)."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def bundled_dir() -> Path:
    import appliance

    here = Path(appliance.__file__).parent / "models"
    if (here / "model_card.json").exists():
        return here
    checkout = Path(appliance.__file__).resolve().parents[1] / "models" / "emotion"  # no symlink
    return checkout if (checkout / "model_card.json").exists() else here


class EmotionModel:
    """Calibrated emotion classifier; one shared onnxruntime session (its `run` is thread-safe)."""

    def __init__(
        self,
        session,
        card: dict,
        model_path: Path,
        providers: list[str],
        embedder: Any | None = None,
        prior: list[float] | tuple[float, ...] | None = None,
    ):
        from appliance.emotion import policy as P

        self._session = session
        self.embedder = embedder
        self.card = card
        spec = card["spec"]
        self.labels = tuple(spec["labels"])
        self.threshold = float(spec["uncertain_threshold"])
        self.arousal_head_weight = float(spec.get("arousal_head_weight", 0.0))
        # cards before 1.1 have no arousal method/threshold: circumplex expectation, decided at 0
        self.arousal_method = str(spec.get("arousal_method", "circumplex"))
        self.arousal_threshold = float(spec.get("arousal_threshold", 0.0))
        self.arousal_high_labels = tuple(spec.get("arousal_high_labels", HIGH_AROUSAL_LABELS))
        self.sample_rates = tuple(int(s) for s in spec["sample_rates"])
        self._priors = {int(k): NormPrior.from_json(v) for k, v in spec["normalisation"].items()}
        self._input = spec["onnx_input"]
        self._outputs = [o.name for o in session.get_outputs()]
        self.model_path = model_path
        # Real-call behaviour (models from 1.3 on; older cards keep their old outputs): deployment
        # prior (the config's, else the card's), out-of-distribution model, abstention rule.
        want = prior if prior else spec.get("deploy_prior")
        self.prior = P.normalise_prior(want, len(self.labels)) if want else None
        self.ood = P.OodModel.from_json(spec["ood"]) if spec.get("ood") else None
        self.min_evidence_s = float((spec.get("abstain") or {}).get("min_duration_s", 0.0))
        self.info: dict[str, Any] = {
            "name": card.get("name", "emotion"),
            "version": spec["version"],
            "sha256": card["files"][model_path.name],
            "file": model_path.name,
            "providers": list(providers),
            "labels": list(self.labels),
            "sample_rates": list(self.sample_rates),
            "uncertain_threshold": self.threshold,
            "embedding": (spec.get("embedding") or {}).get("kind"),
        }

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        variant: str | None = None,
        providers: list[str] | tuple[str, ...] | None = None,
        intra_op_num_threads: int = 1,
        prior: list[float] | tuple[float, ...] | None = None,
    ) -> EmotionModel:
        """Load and verify a model.

        `path`: a model directory (with `model_card.json`), a card file, or an ONNX file next to its
        card; None = the bundled model. `variant` ("int8"/"fp32") picks another file listed in the
        card instead of the card's `model_file`. `providers`: onnxruntime providers, default CPU;
        CUDA is used only when requested and available. `prior`: a site's label prior (7 numbers,
        label order; `[emotion] prior`), instead of the card's `deploy_prior`.
        """
        import onnxruntime as ort

        p = Path(path) if path is not None else bundled_dir()
        onnx_file: Path | None = None
        if p.is_dir():
            card_path = p / "model_card.json"
        elif p.suffix == ".onnx":
            onnx_file, card_path = p, p.parent / "model_card.json"
        else:
            card_path = p
        try:
            card = json.loads(card_path.read_text())
            spec = card["spec"]
            files = card["files"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{card_path}: unreadable model card ({exc})") from exc
        if onnx_file is None:
            name = card.get("model_file")
            if variant is not None:
                name = (card.get("variants") or {}).get(variant)
                if name is None:
                    raise ModelError(f"{card_path}: no '{variant}' variant in the card")
            onnx_file = card_path.parent / str(name)
        if onnx_file.name not in files:
            raise ModelError(f"{onnx_file.name}: not listed in the model card")
        if not onnx_file.is_file():
            raise ModelError(f"{onnx_file}: model file missing")
        digest = sha256_file(onnx_file)
        if digest != files[onnx_file.name]:
            raise ModelError(
                f"{onnx_file.name}: SHA-256 {digest[:12]}... does not match the model card"
            )
        cls._check_spec(spec)

        want = list(providers) if providers else ["CPUExecutionProvider"]
        avail = set(ort.get_available_providers())
        use = [pv for pv in want if pv in avail] or ["CPUExecutionProvider"]
        missing = [pv for pv in want if pv not in avail]
        if missing:
            # a Jetson/CUDA setting on a box without the GPU build: say so, run on the CPU
            log.warning(
                "onnxruntime providers %s not available here (have %s): using %s",
                missing,
                sorted(avail),
                use,
            )
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(intra_op_num_threads)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            sess = ort.InferenceSession(str(onnx_file), sess_options=so, providers=use)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"{onnx_file.name}: onnxruntime cannot load it ({exc})") from exc
        meta = sess.get_modelmeta().custom_metadata_map
        if meta.get("spec_sha256") != spec_digest(spec):
            raise ModelError(
                f"{card_path.name}: spec does not match the one the model was built with"
            )
        inp = sess.get_inputs()[0]
        if inp.name != spec["onnx_input"]["name"] or int(inp.shape[-1]) != int(
            spec["onnx_input"]["dim"]
        ):
            raise ModelError(
                f"{onnx_file.name}: input {inp.name}{inp.shape} does not match the card"
            )
        embedder = None
        if spec.get("embedding"):
            from appliance.emotion.embedding import EmbeddingError, SpeechEmbedder

            try:
                embedder = SpeechEmbedder.from_spec(spec["embedding"], int(intra_op_num_threads))
            except (EmbeddingError, KeyError, TypeError, ValueError) as exc:
                raise ModelError(f"{card_path.name}: speech embedding unavailable ({exc})") from exc
        try:
            return cls(sess, card, onnx_file, use, embedder, prior)
        except ValueError as exc:  # a prior of the wrong length or sign
            raise ModelError(f"{card_path.name}: {exc}") from exc

    @staticmethod
    def _check_spec(spec: dict) -> None:
        try:
            if tuple(spec["labels"]) != EMOTION_LABELS:
                raise ModelError(f"model labels {spec['labels']} != {list(EMOTION_LABELS)}")
            if spec["feature_version"] != FEATURE_VERSION:
                raise ModelError(f"feature version {spec['feature_version']} != {FEATURE_VERSION}")
            names = model_input_names(spec)
            if list(spec["feature_names"]) != names:
                raise ModelError("feature names in the card do not match this frontend")
            dim = 2 * len(names) + 1
            if int(spec["onnx_input"]["dim"]) != dim:
                raise ModelError(f"card input dim {spec['onnx_input']['dim']} != {dim}")
            if sorted(int(s) for s in spec["sample_rates"]) != sorted(SAMPLE_RATES):
                raise ModelError(f"sample rates {spec['sample_rates']} unsupported")
            for sr in SAMPLE_RATES:
                prior = spec["normalisation"][str(sr)]
                if not all(len(prior[k]) == len(names) for k in ("mean", "var", "gvar")):
                    raise ModelError(f"normalisation prior for {sr} Hz has the wrong size")
            float(spec["uncertain_threshold"])
            if spec.get("arousal_method", "circumplex") not in ("circumplex", "class_sum"):
                raise ModelError(f"unknown arousal method {spec['arousal_method']!r}")
            if not set(spec.get("arousal_high_labels", HIGH_AROUSAL_LABELS)) <= set(EMOTION_LABELS):
                raise ModelError(f"arousal labels {spec['arousal_high_labels']} not model labels")
            if not -1.0 < float(spec.get("arousal_threshold", 0.0)) < 1.0:
                raise ModelError(f"arousal threshold {spec['arousal_threshold']} outside (-1, 1)")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model card spec incomplete ({exc})") from exc

    # -- inference -------------------------------------------------------------------------
    def new_state(self) -> ChannelState:
        return ChannelState(self._priors)

    def run_features(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """ONNX forward pass on normalised inputs float32[n, dim] ->
        (probs[n, 7], intensity[n], P(high arousal)[n] or None)."""
        out = self._session.run(None, {self._input["name"]: np.atleast_2d(z).astype(np.float32)})
        res = dict(zip(self._outputs, out, strict=True))
        ah = res.get("arousal_high")
        return res["probs"], res["intensity"].reshape(-1), None if ah is None else ah.reshape(-1)

    def infer(self, audio: np.ndarray, sr: int, state: ChannelState) -> EmotionResult:
        """Score one utterance with the call's past, then add it to the call's statistics."""
        if sr not in self.sample_rates:
            raise ValueError(f"sample rate {sr} not supported (use one of {self.sample_rates})")
        f = raw_features(audio, sr, self.embedder)
        z = state.normalise(f, sr)
        probs, inten, ahigh = self.run_features(z[None, :])
        state.update(f, sr)
        ood = float(self.ood.score(z)[0]) if self.ood is not None else None
        ah = None if ahigh is None else float(ahigh[0])
        return self.result(probs[0], float(inten[0]), ah, duration=len(audio) / sr, ood=ood)

    def result(
        self,
        probs: np.ndarray,
        intensity: float,
        arousal_high: float | None,
        *,
        duration: float | None = None,
        ood: float | None = None,
    ) -> EmotionResult:
        """EmotionResult of one row of `run_features`' outputs, with the card's uncertainty
        threshold and arousal rule; for models that have them, the deployment prior, the
        out-of-distribution pull towards it (`ood`: the input's distance score) and the
        short-utterance abstention (`duration` in seconds)."""
        from appliance.emotion import policy as P

        model_probs = np.asarray(probs, dtype=np.float64)
        p = P.adjust_prior(model_probs, self.prior)
        far = False
        if self.ood is not None and ood is not None:
            w = float(self.ood.weight(ood))
            fallback = self.prior if self.prior is not None else np.full(len(p), 1.0 / len(p))
            p = (1 - w) * p + w * fallback
            far = ood > self.ood.q99
        r = make_result(
            p,
            intensity,
            self.threshold,
            arousal_high,
            self.arousal_head_weight,
            arousal_method=self.arousal_method,
            arousal_threshold=self.arousal_threshold,
            high_labels=self.arousal_high_labels,
            arousal_probs=model_probs,
        )
        short = duration is not None and duration < self.min_evidence_s
        return P.abstain(r) if (far or short) else r
