"""Word error rate as `appliance bench stt` scores it: text normalisation and edit distance.

A recogniser is charged for words it got wrong, not for writing a right word another way. The
conventions are the usual ones of English ASR scoring (the Whisper paper's normaliser, the
Hub5 "GLM" equivalences), written here for our sets:

- case, punctuation and hyphens do not count; dotted abbreviations are one word ("A.M." = "am");
- unambiguous contractions are expanded on both sides ("that's" = "that is", "I'm" = "I am",
  "isn't" = "is not"); a possessive "'s" is kept as it is ("party's" -> "partys");
- numbers are digits ("twenty five" = "25", "hundred" = "100", "tenth" = "10th"), digits said
  one by one stay apart ("one two three" -> "1 2 3");
- a few spellings are one (British/American, "thru", "ok", symbols such as "#" = "pound");
- a compound written as one word on one side and two or three on the other ("voicemail" /
  "voice mail", "login" / "log in") is the same words: the edit distance lets the split words
  stand for the one word at no cost, where they sit in the alignment.

What stays an error: a homophone in the wrong form ("4" for the word "for"), an ordinal said
as a cardinal ("12" for "twelfth"), any other word wrong, missing or extra.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["normalise_text", "word_errors", "scored_words", "wer"]

# Spellings that differ only in form between a recogniser and a reference transcript.
_CANON = {
    "mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "ok": "okay",
    "#": "pound", "*": "star", "%": "percent", "&": "and", "neighbour": "neighbor",
    "colour": "color", "favour": "favor", "counselled": "counseled", "centre": "center",
    "thru": "through", "cancelled": "canceled", "cancelling": "canceling",
}  # fmt: skip
# Contractions whose expansion is not in doubt. "'s" is expanded only after the words where it
# cannot be a possessive; "'d" (had / would) is kept as it is.
_CONTRACTIONS = (
    (r"\bwon't\b", "will not"),
    (r"\bcan't\b", "can not"),
    (r"\bshan't\b", "shall not"),
    (r"\blet's\b", "let us"),
    (r"n't\b", " not"),
    (r"'re\b", " are"),
    (r"'m\b", " am"),
    (r"'ve\b", " have"),
    (r"'ll\b", " will"),
    (r"\b(that|it|he|she|there|here|what|who|where|how)'s\b", r"\1 is"),
)
_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
_CARDINALS = _UNITS.keys() | _TENS.keys()
# "second" is left out: on a call it is mostly the time unit ("one second, please").
_ORDINAL_WORDS = {
    "first": "one", "third": "three", "fifth": "five", "eighth": "eight",
    "ninth": "nine", "twelfth": "twelve",
}  # fmt: skip


def _ordinal_base(word: str) -> str | None:
    """The cardinal word of an ordinal word ("twentieth" -> "twenty"), None if not one."""
    if word in _ORDINAL_WORDS:
        return _ORDINAL_WORDS[word]
    if word.endswith("ieth") and word[:-4] + "y" in _TENS:
        return word[:-4] + "y"
    if word.endswith("th") and (word[:-2] in _UNITS or word[:-2] in _SCALES):
        return word[:-2]
    return None


def _suffix(n: int) -> str:
    if n % 100 in (11, 12, 13):
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _numbers_to_digits(words: list[str]) -> list[str]:
    """Number words to digits, the way recognisers print them: "twenty five" -> "25",
    "two hundred and six" -> "206", "one two three" -> "1 2 3" (digits said one by one stay
    apart), "twenty first" -> "21st", a bare "hundred" -> "100"."""
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w not in _CARDINALS and w not in _SCALES and _ordinal_base(w) is None:
            out.append(w)
            i += 1
            continue
        total, current, j, last, nth = 0, 0, i, "", False
        while j < len(words):
            t = words[j]
            base = _ordinal_base(t)
            word = base or t
            if word in _UNITS and last in ("", "tens", "scale"):
                if last == "tens" and _UNITS[word] >= 10:
                    break
                current += _UNITS[word]
                last = "unit"
            elif word in _TENS and last in ("", "scale"):
                current += _TENS[word]
                last = "tens"
            elif word in _SCALES and (
                last in ("", "unit", "tens") or (last == "scale" and current and word != "hundred")
            ):
                current = max(current, 1)
                if word == "hundred":
                    current *= 100
                else:
                    total += current * _SCALES[word]
                    current = 0
                last = "scale"
            elif (
                t == "and"
                and last == "scale"
                and j + 1 < len(words)
                and (_ordinal_base(words[j + 1]) or words[j + 1]) in _CARDINALS
            ):
                pass
            else:
                break
            j += 1
            if base is not None:
                nth = True
                break
        n = total + current
        out.append(f"{n}{_suffix(n)}" if nth else str(n))
        i = j
    return out


def normalise_text(text: str) -> list[str]:
    """Lower-case words with the conventions above applied."""
    t = text.lower().replace("’", "'")
    t = re.sub(r"\b((?:[a-z]\.){2,})", lambda m: m.group(1).replace(".", ""), t)
    for pattern, repl in _CONTRACTIONS:
        t = re.sub(pattern, repl, t)
    t = t.replace("-", " ")
    t = re.sub(r"(?<=\d),(?=\d{3})", "", t)
    t = re.sub(r"([#*%&])", r" \1 ", t)
    t = re.sub(r"[^\w\s'#*%&]", " ", t)
    t = t.replace("'", "")
    words = [_CANON.get(w, w) for w in t.split()]
    return _numbers_to_digits(words)


def word_errors(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Edit distance over words (substitutions + deletions + insertions), where two or three
    neighbouring words on one side spelling one word of the other side ("voice mail" against
    "voicemail") cost nothing: a compound written apart is the same words."""
    n, m = len(ref), len(hyp)
    d = [[i + j if i == 0 or j == 0 else 0 for j in range(m + 1)] for i in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            best = min(
                d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1])
            )
            for k in (2, 3):
                if j >= k and ref[i - 1] == "".join(hyp[j - k : j]):
                    best = min(best, d[i - 1][j - k])
                if i >= k and hyp[j - 1] == "".join(ref[i - k : i]):
                    best = min(best, d[i - k][j - 1])
            d[i][j] = best
    return d[n][m]


def scored_words(ref: str, hyp: str) -> tuple[int, int]:
    """(errors, normalised reference words) of one reference and one hypothesis."""
    rw = normalise_text(ref)
    return word_errors(rw, normalise_text(hyp)), len(rw)


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate: total edit distance / total reference words (normalised text)."""
    errors = total = 0
    for r, h in zip(refs, hyps, strict=True):
        e, n = scored_words(r, h)
        errors += e
        total += n
    return errors / max(total, 1)
