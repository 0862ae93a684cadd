"""Redaction of card numbers, security codes, expiry dates, phone numbers, e-mails and IDs.

Why token-based and not a few regexes: recognisers write numbers in every form -- "5425 2334 3010
9903", "5425-2334-...", "five four two five", "fifty four twenty five", "oh" for zero, "double
five" -- so the text is first cut into tokens, runs of number-bearing tokens are turned into a
digit string (spoken or written), and the digit string is classified with context words
(Luhn, "card", "security code", "expires", "phone", "social security" ...). Whatever is not
classified but still carries six or more digits becomes `[NUMBER]`: the invariant is that no run
of >= 6 digits (as digits or number words) ever leaves this module, because transcripts are
stored and a recogniser error must not turn into a stored card number.

`redact_words()` applies the same decision to a word list with timings: every word inside a
redacted span is replaced by the tag and keeps its own timing (word counts and speaking rate
stay correct).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from appliance.types import Word

__all__ = ["Redaction", "redact", "redact_words", "luhn_ok", "TAGS"]

TAGS = ("CARD", "CVV", "EXPIRY", "PHONE", "EMAIL", "ID", "NUMBER")


@dataclass(frozen=True)
class Redaction:
    """Redacted text and how many spans of each category were replaced."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)


# --- vocabulary ---------------------------------------------------------------------------

_UNITS = {
    "zero": 0, "oh": 0, "o": 0, "nought": 0, "naught": 0, "nil": 0,
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_REPEAT = {"double": 2, "triple": 3}
_FILLERS = {
    "uh",
    "um",
    "er",
    "erm",
    "ah",
    "hmm",
    "mm",
    "dash",
    "hyphen",
    "slash",
    "-",
    "–",
    "—",
    "/",
}
_MONTHS = {
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug",
    "sep", "sept", "oct", "nov", "dec",
}  # fmt: skip
_TLDS = {"com", "net", "org", "edu", "gov", "io", "co", "uk", "de", "fr", "info", "biz", "us", "ca"}

# Context cues, as tuples of normalised tokens. Searched in a window before a run.
_CARD_CUES = (
    ("card",), ("visa",), ("mastercard",), ("master", "card"), ("amex",), ("american", "express"),
    ("discover",), ("credit",), ("debit",), ("number",), ("account",), ("pan",),
)  # fmt: skip
_CVV_CUES = (
    ("security", "code"), ("cvv",), ("cvc",), ("cv2",), ("cvv2",), ("csc",),
    ("code", "on", "the", "back"), ("three", "digit", "code"), ("3", "digit", "code"),
    ("four", "digit", "code"), ("4", "digit", "code"), ("verification", "code"),
    ("card", "verification"), ("security", "number"), ("three", "digits", "on", "the", "back"),
    ("code",), ("pin",),
)  # fmt: skip
_EXPIRY_CUES = (
    ("expires",), ("expiry",), ("expiration",), ("exp",), ("expire",), ("expiring",),
    ("valid", "until"), ("valid", "thru"), ("valid", "through"), ("good", "thru"),
    ("good", "through"), ("valid", "till"),
)  # fmt: skip
_PHONE_CUES = (
    ("phone",), ("telephone",), ("cell",), ("mobile",), ("call", "me"), ("reach", "me"),
    ("callback",), ("call", "back"), ("fax",), ("landline",), ("extension",),
)  # fmt: skip
_ID_CUES = (
    ("social", "security"), ("ssn",), ("social",), ("national", "insurance"), ("passport",),
    ("tax", "id"), ("license",), ("licence",), ("id", "number"), ("identification",),
    ("insurance", "number"), ("member", "id"), ("date", "of", "birth"),
)  # fmt: skip

# How many tokens before a run (or after a cue) are searched for context.
_CONTEXT_WINDOW = 8
_CVV_WINDOW = 10
_EXPIRY_WINDOW = 4
_AFTER_CARD_WINDOW = 12
_CONNECTORS = frozenset({"and", "then", "okay", "ok", "yes", "yeah", "right", "so", "got", "it"})
# "<word> code" that is not a card security code.
_OTHER_CODES = {
    "zip", "postal", "post", "postcode", "area", "promo", "promotional", "discount",
    "country", "error", "tracking", "booking", "reference", "confirmation", "sort",
}  # fmt: skip
_AMOUNT_WORDS = {"dollars", "dollar", "pounds", "euros", "bucks", "cents", "percent", "minutes"}

_STRIP = "\"'()[]{}<>.,;:!?*`“”‘’"
_RE_DIGITS_TOKEN = re.compile(r"^[+#]?\d[\d,\-/.]*$")
_RE_AMOUNT = re.compile(r"^[$£€]\d|^\d[\d,]*\.\d{1,2}$")
_RE_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(\.[\w\-]+)+", re.UNICODE)
_RE_SSN = re.compile(r"^\d{3}-\d{2}-\d{4}$")
_RE_EXPIRY = re.compile(r"^(0[1-9]|1[0-2])/(\d{2}|20\d{2})$")
_RE_PHONE = re.compile(r"^(\+?1[-.]?)?\(?\d{3}\)?[-.]?\d{3}[-.]\d{4}$")
# Backstop on the final text: 6+ digits with only separators between them.
_RE_LONG_DIGITS = re.compile(r"[^\W\d]*\d(?:[\s\-/,]{0,3}\d){5,}[^\W\d]*")


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


def _norm(token: str) -> str:
    """Lower-case a token and strip surrounding punctuation (keep inner '-', '/', '@', '.')."""
    t = token.strip(_STRIP).lower()
    return t.strip(_STRIP)


def _split_hyphenated(n: str) -> list[str]:
    """'twenty-five' -> ['twenty', 'five'] when every part is a number word."""
    if "-" in n and not n[0].isdigit():
        parts = [p for p in n.split("-") if p]
        if parts and all(p in _UNITS or p in _TEENS or p in _TENS for p in parts):
            return parts
    return [n]


# --- spoken and written numbers ------------------------------------------------------------


def _token_kind(n: str) -> str:
    """Classify a normalised token: 'digits', 'word', 'repeat', 'hundred', 'filler' or ''."""
    if not n:
        return "filler"
    if _RE_AMOUNT.match(n):
        return ""
    if _RE_DIGITS_TOKEN.match(n) and any(c.isdigit() for c in n):
        return "digits"
    if (
        n in _UNITS
        or n in _TEENS
        or n in _TENS
        or all(p in _UNITS or p in _TEENS or p in _TENS for p in _split_hyphenated(n))
    ):
        return "word"
    if n in _REPEAT:
        return "repeat"
    if n in ("hundred", "thousand"):
        return "hundred"
    if n in _FILLERS:
        return "filler"
    return ""


def _spoken_digits(words: list[str]) -> str:
    """Turn a list of number words into the digit string a caller means.

    Digits are read one by one ("four one one one"), in pairs ("fifty four twenty five"),
    with repeats ("double five"), "oh" for zero, and simple hundreds/thousands.
    """
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in _REPEAT:
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if nxt in _UNITS:
                out.append(str(_UNITS[nxt]) * _REPEAT[w])
                i += 2
                continue
            i += 1
            continue
        if w in _TENS:
            val = _TENS[w]
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if nxt in _UNITS and _UNITS[nxt] != 0 and nxt not in ("o", "oh"):
                val += _UNITS[nxt]
                i += 1
            out.append(str(val))
            i += 1
            continue
        if w in _TEENS:
            out.append(str(_TEENS[w]))
            i += 1
            continue
        if w in _UNITS:
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if nxt == "hundred":
                # "four hundred [twenty five]" -> 400 / 425
                j = i + 2
                rest = ""
                if j < len(words) and words[j] in _TENS:
                    rest = str(_TENS[words[j]])
                    if j + 1 < len(words) and words[j + 1] in _UNITS and _UNITS[words[j + 1]]:
                        rest = str(_TENS[words[j]] + _UNITS[words[j + 1]])
                        j += 1
                    j += 1
                elif j < len(words) and words[j] in _TEENS:
                    rest = str(_TEENS[words[j]])
                    j += 1
                elif j < len(words) and words[j] in _UNITS and words[j] not in ("o", "oh"):
                    rest = "0" + str(_UNITS[words[j]])
                    j += 1
                out.append(str(_UNITS[w]) + (rest.zfill(2) if rest else "00"))
                i = j
                continue
            if nxt == "thousand":
                out.append(str(_UNITS[w]) + "000")
                i += 2
                continue
            out.append(str(_UNITS[w]))
            i += 1
            continue
        if w in ("hundred",):
            out.append("00")
        elif w == "thousand":
            out.append("000")
        i += 1
    return _merge_thousands("".join(out), words)


def _merge_thousands(s: str, words: list[str]) -> str:
    """'two thousand twenty four' reads as 2024, not 200024: drop the padding zeros."""
    if "thousand" in words and len(words) <= 5:
        head, _, tail = " ".join(words).partition("thousand")
        lead = _spoken_digits(head.split()) if head.split() else "1"
        rest = _spoken_digits(tail.split()) if tail.split() else ""
        if len(rest) <= 3:
            return lead + rest.zfill(3)
    return s


@dataclass
class _Run:
    start: int  # token index, inclusive
    end: int  # token index, exclusive
    digits: str
    spoken: bool


def _find_runs(norm: list[str], connectors: frozenset[str] = frozenset()) -> list[_Run]:
    """Maximal runs of number-bearing tokens (fillers and `connectors` inside, not at edges)."""
    runs: list[_Run] = []
    i = 0
    n = len(norm)
    while i < n:
        kinds = _token_kind(norm[i])
        if kinds not in ("digits", "word", "repeat"):
            i += 1
            continue
        j = i
        last_num = i
        while j < n:
            k = _token_kind(norm[j])
            if k in ("digits", "word", "hundred"):
                last_num = j
            elif k not in ("repeat", "filler") and norm[j] not in connectors:
                break
            j += 1
        end = last_num + 1
        digits_parts: list[str] = []
        words: list[str] = []
        spoken = False
        for t in norm[i:end]:
            k = _token_kind(t)
            if k == "digits":
                if words:
                    digits_parts.append(_spoken_digits(words))
                    words = []
                digits_parts.append("".join(c for c in t if c.isdigit()))
            elif k in ("word", "repeat", "hundred"):
                words.extend(_split_hyphenated(t))
                spoken = True
        if words:
            digits_parts.append(_spoken_digits(words))
        digits = "".join(digits_parts)
        if digits:
            runs.append(_Run(i, end, digits, spoken))
        i = end
    return runs


def _has_cue(norm: list[str], lo: int, hi: int, cues: tuple[tuple[str, ...], ...]) -> int:
    """Index just after the last cue found in norm[lo:hi], or -1."""
    lo = max(lo, 0)
    found = -1
    for i in range(lo, hi):
        for cue in cues:
            if tuple(norm[i : i + len(cue)]) == cue and i + len(cue) <= hi:
                found = max(found, i + len(cue))
    return found


# --- the classifier ------------------------------------------------------------------------


def _spans(tokens: Sequence[str], partial: bool = False) -> list[tuple[int, int, str]]:
    """Redacted spans (start, end, TAG) over a token list; spans do not overlap."""
    norm = [_norm(t) for t in tokens]
    # Tokens like "4111-1111" stay one token; "@" written alone is the spoken "at".
    norm = [("at" if t == "@" else t) for t in norm]
    taken = [False] * len(norm)
    spans: list[tuple[int, int, str]] = []

    def take(a: int, b: int, tag: str) -> None:
        if a >= b or any(taken[a:b]):
            # overlapping: keep only the free part(s)
            i = a
            while i < b:
                if taken[i]:
                    i += 1
                    continue
                j = i
                while j < b and not taken[j]:
                    j += 1
                spans.append((i, j, tag))
                for k in range(i, j):
                    taken[k] = True
                i = j
            return
        spans.append((a, b, tag))
        for k in range(a, b):
            taken[k] = True

    # 1. E-mail: written, then spoken "name dot name at domain dot com".
    for i, t in enumerate(tokens):
        if _RE_EMAIL.search(t):
            take(i, i + 1, "EMAIL")
    for i, t in enumerate(norm):
        if t != "at" or taken[i]:
            continue
        j = i + 1
        dom_end = -1
        written = j < len(norm) and re.fullmatch(r"[\w\-]+(\.[\w\-]+)*\.[a-z]{2,6}", norm[j])
        if written:
            dom_end = j + 1
        while not written and j + 2 <= len(norm) and norm[j] and norm[j] not in ("dot", "at"):
            if j + 2 < len(norm) and norm[j + 1] in ("dot", "."):
                if norm[j + 2] in _TLDS:
                    dom_end = j + 3
                j += 2
                continue
            break
        if dom_end < 0:
            continue
        k = i - 1
        if k < 0 or norm[k] in ("", "is", "was", "me", "us", "them", "him", "her"):
            continue
        while k - 2 >= 0 and norm[k - 1] in ("dot", "underscore", "dash", "hyphen", "."):
            k -= 2
        cue_at = _has_cue(norm, i - 6, i, (("email",), ("e-mail",), ("mail",), ("address",)))
        if cue_at >= 0:
            # everything after "is"/"email"/"address" up to "at" is the local part
            start = cue_at
            for m in range(cue_at, i):
                if norm[m] in ("is", "it's", "its", "was", "it"):
                    start = m + 1
            k = min(k, start) if start < i else k
        take(k, dom_end, "EMAIL")

    runs = _find_runs(norm)

    # 2. Expiry: written MM/YY anywhere; after an expiry cue, the next short run (+ month name).
    for i, t in enumerate(norm):
        if _RE_EXPIRY.match(t) and not taken[i]:
            take(i, i + 1, "EXPIRY")
    for run in runs:
        cue = _has_cue(norm, run.start - _EXPIRY_WINDOW, run.start, _EXPIRY_CUES)
        month_before = run.start - 1 >= 0 and norm[run.start - 1] in _MONTHS
        if cue < 0 and month_before:
            cue = _has_cue(norm, run.start - 1 - _EXPIRY_WINDOW, run.start - 1, _EXPIRY_CUES)
        if cue >= 0 and (3 <= len(run.digits) <= 6 or (month_before and len(run.digits) <= 4)):
            a = run.start - 1 if month_before else run.start
            take(a, run.end, "EXPIRY")
            run.digits = ""
    for i, t in enumerate(norm):
        if t in _MONTHS and not taken[i] and i + 1 < len(norm):
            cue = _has_cue(norm, i - _EXPIRY_WINDOW, i, _EXPIRY_CUES)
            if cue >= 0 and re.fullmatch(r"\d{2}|\d{4}", norm[i + 1] or "x"):
                take(i, i + 2, "EXPIRY")

    # 3. CVV: after a security-code cue, the first run of 3-4 digits within a few tokens.
    for run in runs:
        if not run.digits or any(taken[run.start : run.end]):
            continue
        cue = _has_cue(norm, run.start - _CVV_WINDOW, run.start, _CVV_CUES)
        if cue >= 2 and norm[cue - 1] == "code" and norm[cue - 2] in _OTHER_CODES:
            cue = -1
        if cue >= 0 and 3 <= len(run.digits) <= 5:
            # 3-4 digits; 5 when the recogniser glued a filler digit on
            take(run.start, run.end, "CVV")
            run.digits = ""

    # 4. Written SSN / phone formats.
    for i, t in enumerate(norm):
        if taken[i]:
            continue
        if _RE_SSN.match(t):
            take(i, i + 1, "ID")
        elif _RE_PHONE.match(t):
            take(i, i + 1, "PHONE")

    # 5a. Card groups joined by "and"/"then"/"okay" ("four one one one and one one one one
    #     and ..."): each group is short, together they are a card when a card cue is near.
    for run in _find_runs(norm, _CONNECTORS):
        inner = [r.digits for r in runs if run.start <= r.start and r.end <= run.end]
        if (
            len(run.digits) >= 12
            and len(inner) >= 2
            and max(len(d) for d in inner) < 12
            and not all(taken[run.start : run.end])
            and _has_cue(norm, run.start - _CONTEXT_WINDOW, run.start, _CARD_CUES) >= 0
        ):
            take(run.start, run.end, "CARD")

    # 5. Classify the remaining runs by length, checksum and context.
    min_run = 4 if partial else 6
    for run in runs:
        d = run.digits
        if not d or all(taken[run.start : run.end]):
            continue
        lo = run.start - _CONTEXT_WINDOW
        id_cue = _has_cue(norm, lo, run.start, _ID_CUES) >= 0
        phone_cue = _has_cue(norm, lo, run.start, _PHONE_CUES) >= 0
        card_cue = _has_cue(norm, lo, run.start, _CARD_CUES) >= 0
        n = len(d)
        tag = ""
        if id_cue and 6 <= n <= 12:
            tag = "ID"
        elif 13 <= n <= 19 and luhn_ok(d):
            tag = "CARD"
        elif phone_cue and 7 <= n <= 13:
            tag = "PHONE"
        elif card_cue and n >= 12:
            tag = "CARD"
        elif (n in (10, 11)) and not run.spoken and _looks_like_phone(tokens[run.start : run.end]):
            tag = "PHONE"
        elif n >= min_run:
            tag = "NUMBER"
        if tag:
            take(run.start, run.end, tag)

    # 6. A 3-4 digit run shortly after a card number is its security code (or expiry) even
    #    when the recogniser garbled the cue ("you already called this one two three").
    card_ends = [b for a, b, tag in spans if tag == "CARD"]
    for run in runs:
        if not run.digits or any(taken[run.start : run.end]) or not 3 <= len(run.digits) <= 4:
            continue
        if run.end < len(norm) and norm[run.end] in _AMOUNT_WORDS:
            continue
        if any(0 <= run.start - b <= _AFTER_CARD_WINDOW for b in card_ends):
            year = len(run.digits) == 4 and run.digits.startswith("20")
            take(run.start, run.end, "EXPIRY" if year else "CVV")
    spans.sort()
    return spans


def _looks_like_phone(tokens: Sequence[str]) -> bool:
    """Written 3-3-4 grouping such as '(555) 123 4567' or '555 123-4567'."""
    groups = re.findall(r"\d+", " ".join(tokens))
    return [len(g) for g in groups] in ([3, 3, 4], [1, 3, 3, 4], [3, 7])


def _backstop(text: str, counts: dict[str, int]) -> str:
    """Last line of defence: no 6+ digit sequence survives, whatever the classifier missed."""

    def sub(m: re.Match[str]) -> str:
        counts["NUMBER"] = counts.get("NUMBER", 0) + 1
        return "[NUMBER]"

    return _RE_LONG_DIGITS.sub(sub, text)


def redact(text: str, partial: bool = False) -> Redaction:
    """Replace sensitive spans of `text` with `[TAG]`s; keep everything else as it was.

    `partial=True` is for streaming partial results, which are cut mid-utterance: any run of
    four or more digits is hidden there too, because its continuation is not known yet.
    """
    if not text:
        return Redaction(text="", counts={})
    matches = list(re.finditer(r"\S+", text))
    tokens = [m.group(0) for m in matches]
    spans = _spans(tokens, partial=partial)
    counts: dict[str, int] = {}
    out: list[str] = []
    pos = 0
    for a, b, tag in spans:
        first, last = tokens[a], tokens[b - 1]
        lead = first[: len(first) - len(first.lstrip(_STRIP))].replace("(", "")
        trail = last[len(last.rstrip(_STRIP)) :]
        out.append(text[pos : matches[a].start()])
        out.append(f"{lead}[{tag}]{trail}")
        pos = matches[b - 1].end()
        counts[tag] = counts.get(tag, 0) + 1
    out.append(text[pos:])
    redacted = _backstop("".join(out), counts)
    return Redaction(text=redacted, counts=counts)


def redact_words(words: Sequence[Word], partial: bool = False) -> tuple[Word, ...]:
    """Redact a timed word list with the same rules as `redact()`.

    Each word inside a redacted span becomes the span's tag (e.g. `[CARD]`) and keeps its own
    start/end/confidence, so timings and word counts survive while the content does not.
    """
    tokens = [w.text.strip() or w.text for w in words]
    spans = _spans(tokens, partial=partial)
    out = list(words)
    for a, b, tag in spans:
        for i in range(a, b):
            out[i] = replace(out[i], text=f"[{tag}]")
    result: list[Word] = []
    for w in out:
        if _RE_LONG_DIGITS.search(w.text):
            w = replace(w, text="[NUMBER]")
        result.append(w)
    return tuple(result)
