"""Text signals of a (redacted) transcript: sentiment, key phrases, speaking rate.

Why VADER: it is a lexicon and rules (no model weights, microseconds per utterance, MIT) and
handles the short, informal, negated sentences of calls ("not happy at all") well enough to be a
second opinion next to the acoustic emotion model. Key phrases are plain case-insensitive
phrase spotting on word boundaries, because supervisors configure them as words, not regexes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

from appliance.types import Word

__all__ = [
    "DEFAULT_KEY_PHRASES",
    "KEY_PHRASES",
    "SENTIMENT_LANGUAGES",
    "text_sentiment",
    "key_phrases",
    "phrases_for",
    "words_per_minute",
]

DEFAULT_KEY_PHRASES: tuple[str, ...] = (
    "cancel",
    "cancellation",
    "speak to a manager",
    "talk to a manager",
    "supervisor",
    "refund",
    "complaint",
    "complain",
    "competitor",
    "switch provider",
    "lawyer",
    "unacceptable",
    "close my account",
    "chargeback",
)

# The escalation phrases in the other languages the box transcribes (our own lists: words a
# supervisor would configure, no lexicon licence involved).
KEY_PHRASES: dict[str, tuple[str, ...]] = {
    "en": DEFAULT_KEY_PHRASES,
    "de": (
        "kündigen", "kündigung", "vorgesetzten sprechen", "mit einem vorgesetzten",
        "mit ihrem chef", "vorgesetzten", "beschwerde", "beschweren", "rückerstattung",
        "geld zurück", "anwalt", "inakzeptabel", "unverschämt", "konto schließen",
        "zur konkurrenz", "anbieter wechseln",
    ),
    "fr": (
        "résilier", "résiliation", "parler à un responsable", "parler au responsable",
        "votre supérieur", "un superviseur", "réclamation", "plainte", "porter plainte",
        "remboursement", "rembourser", "avocat", "inacceptable", "fermer mon compte",
        "la concurrence", "changer de fournisseur",
    ),
    "es": (
        "cancelar", "cancelación", "darme de baja", "hablar con un supervisor",
        "hablar con el encargado", "hablar con un responsable", "supervisor", "reclamación",
        "queja", "reembolso", "devolución", "abogado", "inaceptable", "cerrar mi cuenta",
        "la competencia", "cambiar de compañía",
    ),
}  # fmt: skip
SENTIMENT_LANGUAGES = frozenset({"en"})
"""Languages with a text sentiment. VADER's lexicon is English. No German, French or Spanish
lexicon has been vetted for its licence yet (SentiWS, for one, is non-commercial), so for those
calls sentiment is the voice's valence alone (`appliance.scoring.call.fuse` with no text score):
the stated limit until one is."""

_ANALYZER = None
_ANALYZER_LOCK = threading.Lock()
_TAG = re.compile(r"\[[A-Z]+\]")
# Inflections of a phrase's last word that still count: refund -> refunds, cancel -> cancelled.
_SUFFIX = r"(?:s|es|d|ed|led|ing|ling|ation|lation)?"


def _analyzer():
    """One VADER analyzer per process: building it parses the lexicon (~10 ms)."""
    global _ANALYZER
    with _ANALYZER_LOCK:
        if _ANALYZER is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            _ANALYZER = SentimentIntensityAnalyzer()
        return _ANALYZER


def phrases_for(language: str) -> tuple[str, ...]:
    """The default key phrases of a language (English for one without a list)."""
    return KEY_PHRASES.get((language or "en").lower(), DEFAULT_KEY_PHRASES)


def text_sentiment(text: str, language: str = "en") -> float | None:
    """VADER compound score in [-1, 1] (negative .. positive); None when there is no text, or
    when the text is in a language without a sentiment lexicon (`SENTIMENT_LANGUAGES`).

    Redaction tags such as `[CARD]` are removed first so they do not count as words.
    """
    if not text or (language or "en").lower() not in SENTIMENT_LANGUAGES:
        return None
    clean = " ".join(_TAG.sub(" ", text).split())
    if not clean:
        return None
    score = float(_analyzer().polarity_scores(clean)["compound"])
    return max(-1.0, min(1.0, score))


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in phrase.lower().split()]
    body = r"[\s\W]+".join(words)
    return re.compile(r"(?<![\w'])" + body + _SUFFIX + r"(?![\w'])", re.IGNORECASE)


def key_phrases(text: str, phrases: Sequence[str] = DEFAULT_KEY_PHRASES) -> list[str]:
    """Configured phrases that occur in `text` (case-insensitive, whole words), in list order.

    Whitespace and punctuation between the words of a phrase are ignored ("speak to a
    manager", "speak to a... manager") and simple inflections of the last word match
    ("refunds", "cancelled", "cancellation"). Each phrase is reported once.
    """
    if not text:
        return []
    found: list[str] = []
    for phrase in phrases:
        if not phrase.strip() or phrase in found:
            continue
        if _phrase_pattern(phrase).search(text):
            found.append(phrase)
    return found


def words_per_minute(words: Sequence[Word] | int, duration: float) -> float:
    """Speaking rate: number of words / duration in minutes (0.0 when duration <= 0).

    `words` is a word list (redaction tags count, they were words) or a count.
    """
    n = words if isinstance(words, int) else len(words)
    if duration <= 0 or n <= 0:
        return 0.0
    return 60.0 * n / duration
