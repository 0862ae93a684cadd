"""Number words, digit runs and the checksums redaction judges them with.

Recognisers write the same card number in many ways: "4111 1111", "4111-1111", "four one one
one", "fifty four twenty five", "double five", "oh", "1.4888.", "-1111", "646 7", even "6th".
This module turns a token list into *runs*: maximal stretches of number-bearing tokens, with
fillers and connectors ("uh", "and", "then", "okay", "comma", "next" ...) allowed inside, each
with the digit string the caller meant. `appliance.stt.redact` classifies runs within one text;
`appliance.stt.call_redaction` joins them across the utterances of a call.

Connectors never break a run on purpose: a caller reading "4111 and 1111 and 1111 and 1111"
means one number, and a run cut at every "and" let twelve of sixteen digits through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "tidy_digits",
    "Run",
    "norm",
    "token_kind",
    "spoken_digits",
    "find_runs",
    "numeric_at",
    "luhn_ok",
    "card_brand",
    "iban_ok",
    "is_date_token",
    "is_tag",
    "MONTHS",
    "JOINERS",
]

UNITS = {
    "zero": 0, "oh": 0, "o": 0, "nought": 0, "naught": 0, "nil": 0,
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
REPEAT = {"double": 2, "triple": 3}
# Noise and separators a recogniser writes between the digits of one number.
FILLERS = frozenset(
    {"uh", "um", "umm", "er", "erm", "ah", "hmm", "mm", "mhm", "dash", "hyphen", "slash",
     "space", "-", "–", "—", "/", "&"}
)  # fmt: skip
# Words callers put between the groups of one number. Never break a run (they are allowed
# anywhere inside one, never at its edges, so "I have two kids and three dogs" stays two runs).
JOINERS = FILLERS | frozenset(
    {"and", "then", "okay", "ok", "comma", "next", "so", "yes", "yeah", "yep", "right",
     "sorry", "again", "also", "plus", "it's", "its", "that's", "thats", "is", "n"}
)  # fmt: skip
MONTHS = frozenset(
    {"january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug",
     "sep", "sept", "oct", "nov", "dec"}
)  # fmt: skip
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}  # fmt: skip
# "one moment", "this one": the word is not a digit there.
_ONE_NOT_A_NUMBER_AFTER = frozenset({"moment", "sec", "second", "minute", "tick", "mo", "of"})
_ONE_NOT_A_NUMBER_BEFORE = frozenset(
    {"this", "that", "the", "which", "each", "every", "no", "any", "another", "new", "old",
     "other", "right", "wrong", "last", "first", "same", "a"}
)  # fmt: skip

STRIP = "\"'()[]{}<>.,;:!?*`“”‘’"
_TAG = re.compile(r"^\W*\[([A-Z]+)\]\W*$")
_DIGITS_TOKEN = re.compile(r"^[+#]?\d[\d,\-/.]*$")
_ORDINAL_TOKEN = re.compile(r"^\d{1,2}(st|nd|rd|th)$")
# Amounts: a currency sign, or thousands commas with cents. A bare "4.5" is not one: Whisper
# writes "four five" as "4.5." and "four zero" as "4.0.".
_AMOUNT = re.compile(r"^[$£€]\d|^\d{1,3}(,\d{3})+\.\d{1,2}$")
AMOUNT_WORDS = frozenset(
    {"dollars", "dollar", "pounds", "pound", "euros", "euro", "bucks", "cents", "pence",
     "percent", "minutes", "minute", "hours", "hour", "seconds", "days", "weeks", "months",
     "years", "items", "pm", "am", "o'clock"}
)  # fmt: skip


_SPELLED = re.compile(r"(?<![\w.\-])\d(?:-\d){2,}(?![\w\-])")
_DOTTED = re.compile(r"(?<![\w$£€.,])(\d)\.(\d{4})(\.?)(?![\w.])")


def tidy_digits(text: str) -> str:
    """One form for the digit strings Whisper writes several ways, before redaction and storage:
    digits spelled one by one with dashes ("4-5-3-9") and a first digit split off by a dot
    ("1.4888.") become plain digits ("4539", "14888."), as the caller said them. Amounts,
    decimals ("1.5"), times and dates keep their form; redaction reads both forms alike, so
    this changes what the panel shows and WER counts, never what is redacted."""
    text = _SPELLED.sub(lambda m: m.group(0).replace("-", ""), text)
    return _DOTTED.sub(lambda m: m.group(1) + m.group(2) + m.group(3), text)


def is_tag(token: str) -> bool:
    """True for a redaction tag such as "[CARD]" (with any punctuation around it)."""
    return bool(_TAG.match(token))


def norm(token: str) -> str:
    """Lower-case a token and strip surrounding punctuation (keep inner '-', '/', '@', '.').

    Tags stay recognisable ("[card]") so a re-redacted text never reads its own tag as a cue.
    Leading/trailing dashes and slashes go when digits are inside: Whisper's word list splits
    "4111-1111" into "4111" and "-1111", which must read as digits like the text does.
    """
    m = _TAG.match(token)
    if m:
        return f"[{m.group(1).lower()}]"
    t = token.strip(STRIP).lower().strip(STRIP)
    if any(c.isdigit() for c in t):
        t = t.strip("-–—/" + STRIP)
    return t


def _split_hyphenated(n: str) -> list[str]:
    """'twenty-five' -> ['twenty', 'five'] when every part is a number word."""
    if "-" in n and not n[0].isdigit():
        parts = [p for p in n.split("-") if p]
        if parts and all(p in UNITS or p in TEENS or p in TENS for p in parts):
            return parts
    return [n]


def token_kind(n: str) -> str:
    """Kind of a normalised token: 'digits', 'word', 'repeat', 'hundred', 'filler' or ''."""
    if not n:
        return "filler"
    if _AMOUNT.match(n):
        return ""
    if (_DIGITS_TOKEN.match(n) or _ORDINAL_TOKEN.match(n)) and any(c.isdigit() for c in n):
        return "digits"
    if (
        n in UNITS
        or n in TEENS
        or n in TENS
        or all(p in UNITS or p in TEENS or p in TENS for p in _split_hyphenated(n))
    ):
        return "word"
    if n in REPEAT:
        return "repeat"
    if n in ("hundred", "thousand"):
        return "hundred"
    if n in FILLERS:
        return "filler"
    return ""


def spoken_digits(words: list[str]) -> str:
    """Turn a list of number words into the digit string a caller means.

    Digits are read one by one ("four one one one"), in pairs ("fifty four twenty five"),
    with repeats ("double five"), "oh" for zero, and simple hundreds/thousands.
    """
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if w in REPEAT:
            value = UNITS.get(nxt, TEENS.get(nxt, TENS.get(nxt)))
            if value is not None:  # "double five" -> 55, "double fifty" -> 5050
                out.append(str(value) * REPEAT[w])
                i += 2
            else:
                i += 1
            continue
        if w in TENS:
            val = TENS[w]
            if nxt in UNITS and UNITS[nxt] != 0 and nxt not in ("o", "oh"):
                val += UNITS[nxt]
                i += 1
            out.append(str(val))
            i += 1
            continue
        if w in TEENS:
            out.append(str(TEENS[w]))
            i += 1
            continue
        if w in UNITS:
            if nxt == "hundred":
                # "four hundred [twenty five]" -> 400 / 425
                j = i + 2
                rest = ""
                if j < len(words) and words[j] in TENS:
                    rest = str(TENS[words[j]])
                    if j + 1 < len(words) and words[j + 1] in UNITS and UNITS[words[j + 1]]:
                        rest = str(TENS[words[j]] + UNITS[words[j + 1]])
                        j += 1
                    j += 1
                elif j < len(words) and words[j] in TEENS:
                    rest = str(TEENS[words[j]])
                    j += 1
                elif j < len(words) and words[j] in UNITS and words[j] not in ("o", "oh"):
                    rest = "0" + str(UNITS[words[j]])
                    j += 1
                out.append(str(UNITS[w]) + (rest.zfill(2) if rest else "00"))
                i = j
                continue
            if nxt == "thousand":
                out.append(str(UNITS[w]) + "000")
                i += 2
                continue
            out.append(str(UNITS[w]))
            i += 1
            continue
        if w == "hundred":
            out.append("00")
        elif w == "thousand":
            out.append("000")
        i += 1
    return _merge_thousands("".join(out), words)


def _merge_thousands(s: str, words: list[str]) -> str:
    """'two thousand twenty four' reads as 2024, not 200024: drop the padding zeros."""
    if "thousand" in words and len(words) <= 5:
        head, _, tail = " ".join(words).partition("thousand")
        lead = spoken_digits(head.split()) if head.split() else "1"
        rest = spoken_digits(tail.split()) if tail.split() else ""
        if len(rest) <= 3:
            return lead + rest.zfill(3)
    return s


@dataclass
class Run:
    """A stretch of number-bearing tokens norm[start:end] and the digits it says."""

    start: int  # token index, inclusive
    end: int  # token index, exclusive
    digits: str
    spoken: bool
    groups: int = 1
    """Number-bearing pieces in the run (1 for "4111", 4 for "4111 and 1111 1111 1111")."""


def _lone_one(norm_tokens: list[str], i: int) -> bool:
    """'one moment', 'this one': a lone "one" that is not a digit."""
    if norm_tokens[i] != "one":
        return False
    nxt = norm_tokens[i + 1] if i + 1 < len(norm_tokens) else ""
    prev = norm_tokens[i - 1] if i > 0 else ""
    nxt_kind = token_kind(nxt) if nxt else ""
    if nxt_kind in ("digits", "word", "repeat", "hundred"):
        return False
    return nxt in _ONE_NOT_A_NUMBER_AFTER or prev in _ONE_NOT_A_NUMBER_BEFORE


def numeric_at(norm_tokens: list[str], i: int) -> bool:
    """True when norm_tokens[i] carries digits here (not the "one" of "one moment")."""
    k = token_kind(norm_tokens[i])
    return k in ("digits", "word", "hundred") and not _lone_one(norm_tokens, i)


def find_runs(norm_tokens: list[str], joiners: frozenset[str] = JOINERS) -> list[Run]:
    """Maximal runs of number-bearing tokens (fillers and `joiners` inside, not at the edges).

    A number followed by an amount word ("45 minutes", "ninety nine dollars") ends its run and
    is not a run itself: amounts and durations stay readable.
    """
    runs: list[Run] = []
    n = len(norm_tokens)

    def numeric(j: int) -> bool:
        return numeric_at(norm_tokens, j)

    i = 0
    while i < n:
        if not (numeric(i) or token_kind(norm_tokens[i]) == "repeat"):
            i += 1
            continue
        j = i
        last_num = i
        while j < n:
            t = norm_tokens[j]
            if numeric(j):
                last_num = j
            elif token_kind(t) not in ("repeat", "filler") and t not in joiners:
                break
            j += 1
        end = last_num + 1
        parts: list[str] = []
        words: list[str] = []
        spoken = False
        groups = 0
        prev_num = False
        for t in norm_tokens[i:end]:
            k = token_kind(t)
            if k == "digits":
                d = "".join(c for c in t if c.isdigit())
                times = REPEAT.get(words.pop(), 1) if words and words[-1] in REPEAT else 1
                if words:
                    parts.append(spoken_digits(words))
                    words = []
                # "double 4" / "double 12" written half in digits: repeat like "double fifty"
                parts.append(d * times if len(d) <= 2 else d[0] * (times - 1) + d)
                groups += 1
                prev_num = False
            elif k in ("word", "repeat", "hundred"):
                words.extend(_split_hyphenated(t))
                spoken = True
                groups += 0 if prev_num else 1
                prev_num = True
            else:
                prev_num = False
        if words:
            parts.append(spoken_digits(words))
        digits = "".join(parts)
        if end < n and norm_tokens[end] in AMOUNT_WORDS and len(digits) < 6:
            digits = ""  # an amount or a duration; six digits stay a number whatever follows
        if digits:
            runs.append(Run(i, end, digits, spoken, max(groups, 1)))
        i = end
    return runs


def is_date_token(n: str) -> bool:
    """Month names and ordinals ("march", "12th", "twelfth", "twenty-first")."""
    if n in MONTHS or n in ORDINALS or _ORDINAL_TOKEN.match(n):
        return True
    parts = n.split("-")
    return len(parts) == 2 and parts[0] in TENS and parts[1] in ORDINALS


# --- checksums and brand ranges ------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum (all payment card numbers do)."""
    if not digits.isdigit() or len(digits) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_MAESTRO = (12, 13, 14, 15, 16, 17, 18, 19)
# (brand, IIN prefix range low, high, allowed lengths); prefixes compared on equal length.
_BRANDS: tuple[tuple[str, str, str, tuple[int, ...]], ...] = (
    ("amex", "34", "34", (15,)),
    ("amex", "37", "37", (15,)),
    ("diners", "300", "305", (14, 16, 17, 18, 19)),
    ("diners", "36", "36", (14, 15, 16, 17, 18, 19)),
    ("diners", "38", "39", (16, 17, 18, 19)),
    ("discover", "6011", "6011", (16, 17, 18, 19)),
    ("discover", "644", "649", (16, 17, 18, 19)),
    ("discover", "65", "65", (16, 17, 18, 19)),
    ("jcb", "3528", "3589", (16, 17, 18, 19)),
    ("mastercard", "51", "55", (16,)),
    ("mastercard", "2221", "2720", (16,)),
    ("unionpay", "62", "62", (16, 17, 18, 19)),
    ("maestro", "5018", "5018", _MAESTRO),
    ("maestro", "5020", "5020", _MAESTRO),
    ("maestro", "5038", "5038", _MAESTRO),
    ("maestro", "5893", "5893", _MAESTRO),
    ("maestro", "6304", "6304", _MAESTRO),
    ("maestro", "6759", "6759", _MAESTRO),
    ("maestro", "6761", "6763", _MAESTRO),
    ("visa", "4", "4", (13, 16, 19)),
)


def card_brand(digits: str) -> str | None:
    """The brand whose IIN range and length fit `digits`, or None (Luhn is not checked here)."""
    for brand, lo, hi, lengths in _BRANDS:
        if len(digits) in lengths and lo <= digits[: len(lo)] <= hi:
            return brand
    return None


def iban_ok(text: str) -> bool:
    """ISO 13616 check: country code, two check digits, mod 97 of the rearranged string == 1."""
    s = re.sub(r"[\s\-]", "", text).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", s):
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
