"""When the box may state an emotion: abstention on backchannels and very short utterances.

Why: an emotion model trained on acted sentences has no evidence in "mm-hmm", "okay", "bye" or
"thank you": they are too short for the prosody statistics and carry no emotion a supervisor
could act on, yet the model used to label them fearful or sad at 0.9+. The rule, stated on the
model card:

- an utterance shorter than `MIN_EVIDENCE_S` (1.0 s) of audio gets `uncertain: true` (its label
  and probabilities stay for diagnostics; consumers ignore uncertain labels);
- an utterance whose transcript is a backchannel (`is_backchannel`: at most `MAX_BACKCHANNEL_WORDS`
  words, all from `BACKCHANNEL_WORDS`, e.g. "mm-hmm", "okay", "yeah", "thank you", "bye", "hello")
  gets `uncertain: true` too, whatever its duration.

The duration rule needs only the audio (`EmotionModel.infer` applies it); the transcript rule
needs the recogniser's text, which arrives after the emotion stage: the pipeline applies
`abstain_on_transcript` when it joins the two.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np

from appliance.types import EmotionResult

__all__ = [
    "OodModel",
    "adjust_prior",
    "fit_ood",
    "normalise_prior",
    "BACKCHANNEL_WORDS",
    "MAX_BACKCHANNEL_WORDS",
    "MIN_EVIDENCE_S",
    "abstain",
    "abstain_on_transcript",
    "is_backchannel",
    "words_of",
]

MIN_EVIDENCE_S = 1.0
"""Utterances shorter than this carry too little voice for an emotion label (uncertain)."""

MAX_BACKCHANNEL_WORDS = 6

# Words that make up feedback, greetings and politeness formulas. An utterance made only of them
# says "I am listening / agreeing / closing", not how the speaker feels.
_BACKCHANNEL_TEXT = """mm mmm hmm mhm mmhmm uh huh uhhuh um umm ah oh ooh eh er erm
    okay ok k yeah yes yep yup ya yea no nope nah sure right alright all
    thank thanks you bye goodbye byebye cheers hello hi hey
    great perfect awesome cool fine good nice wonderful lovely excellent
    i see got it so well sir maam much very really wow gotcha
    and the a"""
BACKCHANNEL_WORDS: frozenset[str] = frozenset(_BACKCHANNEL_TEXT.split())

_WORD = re.compile(r"[a-z']+")


def words_of(text: str | None) -> list[str]:
    """Lower-case words of a transcript; hyphens and apostrophes joined ("mm-hmm" -> "mmhmm")."""
    if not text:
        return []
    t = text.lower().replace("-", "").replace("'", "")
    return _WORD.findall(t)


def is_backchannel(text: str | None) -> bool:
    """True for a short transcript made only of backchannel words ("Mm-hmm.", "Okay, thank you.",
    "Bye."). Empty text is not a backchannel (no evidence either way)."""
    w = words_of(text)
    return 0 < len(w) <= MAX_BACKCHANNEL_WORDS and all(x in BACKCHANNEL_WORDS for x in w)


def abstain(result: EmotionResult, reason: str | None = None) -> EmotionResult:
    """The same result marked `uncertain` (label and probabilities kept for diagnostics)."""
    del reason  # the reason is for logs and tests; the contract has only the flag
    return result if result.uncertain else dataclasses.replace(result, uncertain=True)


def abstain_on_transcript(result: EmotionResult | None, text: str | None) -> EmotionResult | None:
    """The pipeline's transcript rule: a backchannel gets no confident emotion."""
    if result is None or not is_backchannel(text):
        return result
    return abstain(result, "backchannel")


# ----------------------------------------------------------------------------- deploy prior


def adjust_prior(
    probs: np.ndarray, prior: np.ndarray | None, train_prior: np.ndarray | None = None
) -> np.ndarray:
    """Logit adjustment from the training prior to a deployment prior: p(y|x) ∝ p_train(y|x) *
    prior(y) / train_prior(y) (Bayes' rule with the likelihoods unchanged). The model is trained
    class-balanced (uniform `train_prior`), so on its own it assumes every emotion is equally
    likely; in real calls most utterances are neutral, and a site knows its own mix."""
    p = np.asarray(probs, dtype=np.float64)
    if prior is None:
        return p
    w = np.asarray(prior, dtype=np.float64)
    if train_prior is not None:
        w = w / np.asarray(train_prior, dtype=np.float64)
    q = p * w
    return q / q.sum(axis=-1, keepdims=True)


def normalise_prior(prior: list[float] | tuple[float, ...] | np.ndarray, n: int) -> np.ndarray:
    """A prior from the config or the card: `n` non-negative numbers, normalised to sum 1."""
    w = np.asarray(prior, dtype=np.float64)
    if w.shape != (n,) or np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"a prior needs {n} non-negative numbers (label order), got {prior!r}")
    return w / w.sum()


# ----------------------------------------------------------------------------- out of distribution


@dataclass(frozen=True)
class OodModel:
    """Distance of a model input to the training distribution (fitted at training time).

    The causal z-scores of an utterance are projected on the training set's top principal
    components; the score is the mean squared Mahalanobis distance in that subspace plus the
    residual outside it, each scaled to 1 on training data (about 1 in distribution). `q50` and
    `q99` are quantiles of the score on held-out speakers in the CV: from q50 the probabilities are
    pulled towards the deployment prior (fully at q99), and above q99 the result is uncertain."""

    mean: np.ndarray  # [d] over the z-score columns
    components: np.ndarray  # [k, d]
    eigvals: np.ndarray  # [k]
    res_var: float  # mean squared residual per training row
    q50: float
    q99: float
    columns: np.ndarray | None = None  # model-input columns measured (None: the first len(mean))

    @classmethod
    def from_json(cls, d: dict) -> OodModel:
        cols = d.get("columns")
        return cls(
            np.asarray(d["mean"], dtype=np.float64),
            np.asarray(d["components"], dtype=np.float64),
            np.asarray(d["eigvals"], dtype=np.float64),
            float(d["res_var"]),
            float(d["q50"]),
            float(d["q99"]),
            None if cols is None else np.asarray(cols, dtype=np.int64),
        )

    def to_json(self) -> dict:
        def r(a: np.ndarray) -> list:
            return [float(f"{v:.6g}") for v in np.ravel(a)]

        k, d = self.components.shape
        return {
            "method": "PCA Mahalanobis + residual on the causal z-scores",
            "k": int(k),
            "mean": r(self.mean),
            "components": [r(self.components[i]) for i in range(k)],
            "eigvals": r(self.eigvals),
            "res_var": float(self.res_var),
            "q50": float(self.q50),
            "q99": float(self.q99),
        }

    def score(self, z: np.ndarray) -> np.ndarray:
        """Distance score of model inputs (rows; the `columns` of the causal z-scores)."""
        x = np.atleast_2d(np.asarray(z, dtype=np.float64))
        x = (x[:, self.columns] if self.columns is not None else x[:, : len(self.mean)]) - self.mean
        p = x @ self.components.T
        res = np.sum(x * x, axis=1) - np.sum(p * p, axis=1)
        return 0.5 * (np.mean(p * p / self.eigvals, axis=1) + np.maximum(res, 0) / self.res_var)

    def weight(self, score: np.ndarray | float) -> np.ndarray:
        """0 (in distribution) .. 1 (at or beyond the 99th held-out percentile)."""
        return np.clip((np.asarray(score) - self.q50) / max(self.q99 - self.q50, 1e-9), 0, 1)


def fit_ood(Z: np.ndarray, k: int = 32) -> OodModel:
    """PCA of training z-scores (rows x columns); quantiles are set later from held-out scores."""
    X = np.asarray(Z, dtype=np.float64)
    mean = X.mean(0)
    Xc = X - mean
    # the covariance is d x d (d ~ 1,100): cheaper than an SVD of the rows
    cov = Xc.T @ Xc / max(len(X) - 1, 1)
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:k]
    comps, ev = vecs[:, order].T, np.maximum(vals[order], 1e-9)
    p = Xc @ comps.T
    res = np.sum(Xc * Xc, axis=1) - np.sum(p * p, axis=1)
    return OodModel(mean, comps, ev, float(max(np.mean(res), 1e-9)), 1.0, 2.0)
