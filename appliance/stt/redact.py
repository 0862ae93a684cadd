"""Redaction of card data, dates of birth, national IDs, IBANs, phone numbers and e-mails.

Why token-based and not a few regexes: recognisers write numbers in every form -- "5425 2334 3010
9903", "5425-2334-...", "five four two five", "fifty four twenty five", "oh" for zero, "double
five", "4111 and 1111 and ..." -- so the text is first cut into tokens, runs of number-bearing
tokens (`appliance.stt.redact_numbers`) are turned into a digit string, and the digit string is
classified with context words (Luhn, "card", "security code", "expires", "born", "phone",
"social security" ...). Whatever is not classified but still carries six or more digits becomes
`[NUMBER]`: the invariant is that no run of >= 6 digits (as digits or number words, connectors
such as "and"/"then"/"okay" between them) leaves this module, because transcripts are stored
and a recogniser error must not turn into a stored card number.

One text is all this module sees. A card read in groups across several utterances, or a bare
"seven three seven" answering "the three digits on the back?", needs the call's context:
`appliance.stt.call_redaction` judges those and calls `redact(text, expect=TAG)` to redact an
utterance it knows to be an answer.

`redact_words()` makes the same decision on a word list with timings: the words are the tokens,
every word inside a redacted span becomes the tag and keeps its own timing (word counts and
speaking rate stay correct). The backstop runs over the joined words too, so a number the
recogniser split over several words ("4111", "-1111", ...) goes exactly as it does in the text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from appliance.stt.redact_lang import to_english
from appliance.stt.redact_numbers import (
    JOINERS,
    MONTHS,
    find_runs,
    iban_ok,
    is_date_token,
    is_tag,
    luhn_ok,
    norm,
    numeric_at,
    token_kind,
)
from appliance.types import Word

__all__ = ["Redaction", "redact", "redact_words", "luhn_ok", "TAGS", "EXPECT_TAGS"]

TAGS = (
    "CARD", "CVV", "EXPIRY", "DOB", "ID", "IBAN", "ACCOUNT", "PIN", "PHONE", "EMAIL", "NUMBER",
)  # fmt: skip
#: Tags `redact(expect=...)` accepts: what an utterance is known to answer.
EXPECT_TAGS = ("CARD", "CVV", "EXPIRY", "DOB", "ID", "IBAN", "ACCOUNT", "PIN", "NUMBER")


@dataclass(frozen=True)
class Redaction:
    """Redacted text and how many spans of each category were replaced."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)


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
    ("digits", "on", "the", "back"), ("code",), ("pin",),
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
    ("insurance", "number"), ("member", "id"),
)  # fmt: skip
_DOB_CUES = (("born",), ("birth",), ("birthday",), ("dob",), ("d.o.b",), ("birthdate",))
_IBAN_CUES = (("iban",), ("i", "b", "a", "n"), ("international", "bank", "account"))
_EMAIL_CUES = (("email",), ("e-mail",), ("mail",), ("address",))

# How many tokens before a run (or after a cue) are searched for context.
_CONTEXT_WINDOW = 8
_CVV_WINDOW = 10
_EXPIRY_WINDOW = 4
_AFTER_CARD_WINDOW = 12
# "<word> code" that is not a card security code.
_OTHER_CODES = {
    "zip", "postal", "post", "postcode", "area", "promo", "promotional", "discount",
    "country", "error", "tracking", "booking", "reference", "confirmation", "sort",
}  # fmt: skip
# Words between a cue and its value ("born on the ...", "my date of birth is ...").
_LEAD_IN = frozenset(
    {"is", "it's", "its", "was", "on", "the", "in", "i", "me", "my", "it", "uh", "um", "er",
     "that's", "date", "so", "yeah", "yes", "okay", "ok", "of", "number", "are", "be", "'s"}
)  # fmt: skip
# Inside a spoken date: "the twelfth of march, nineteen eighty five".
_DATE_GLUE = frozenset({"of", "the", "and", "in", "-", "/", ",", ""})
# Words a recogniser writes for a digit ("for" for four): digits only inside a known answer.
_HOMOPHONES = frozenset({"for", "fore", "to", "too", "ate", "won", "free", "tree", "nein"})
# Not the domain of a spoken e-mail: "at the shop dot ..." is not an address.
_NOT_A_DOMAIN = frozenset(
    {"the", "a", "an", "my", "your", "our", "this", "that", "home", "work", "least", "all",
     "first", "last", "once", "night", "noon", "about", "around"}
)  # fmt: skip

_RE_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(\.[\w\-]+)+", re.UNICODE)
_RE_SSN = re.compile(r"^\d{3}-\d{2}-\d{4}$")
_RE_EXPIRY = re.compile(r"^(0[1-9]|1[0-2])/(\d{2}|20\d{2})$")
_RE_PHONE = re.compile(r"^(\+?1[-.]?)?\(?\d{3}\)?[-.]?\d{3}[-.]\d{4}$")
_RE_IBAN_HEAD = re.compile(r"^[a-z]{2}\d{2}[a-z0-9]*$")
_RE_ALNUM_GROUP = re.compile(r"^[a-z0-9]{1,5}$")
_RE_WRITTEN_DOMAIN = re.compile(r"[\w\-]+(\.[\w\-]+)*\.[a-z]{2,12}")
# Backstop on the final text: 6+ digits with only separators between them.
_RE_LONG_DIGITS = re.compile(r"[^\W\d]*\d(?:[\s\-/,]{0,3}\d){5,}[^\W\d]*")
_PUNCT = "\"'()[]{}<>.,;:!?*`“”‘’"


def _has_cue(norm_t: list[str], lo: int, hi: int, cues: tuple[tuple[str, ...], ...]) -> int:
    """Index just after the last cue found in norm_t[lo:hi], or -1."""
    lo = max(lo, 0)
    found = -1
    for i in range(lo, hi):
        for cue in cues:
            if tuple(norm_t[i : i + len(cue)]) == cue and i + len(cue) <= hi:
                found = max(found, i + len(cue))
    return found


def _cue_ends(norm_t: list[str], cues: tuple[tuple[str, ...], ...]) -> list[int]:
    """Index just after every cue occurrence."""
    out = []
    for i in range(len(norm_t)):
        for cue in cues:
            if tuple(norm_t[i : i + len(cue)]) == cue:
                out.append(i + len(cue))
    return sorted(set(out))


def _date_core(n: str) -> bool:
    return is_date_token(n) or token_kind(n) in ("digits", "word", "hundred", "repeat")


def _date_span(norm_t: list[str], i: int) -> int:
    """End (exclusive) of the date expression starting at core token i."""
    end = j = i
    while j < len(norm_t):
        t = norm_t[j]
        if _date_core(t):
            end = j + 1
        elif t not in _DATE_GLUE and token_kind(t) != "filler":
            break
        j += 1
    return end


# --- the classifier ------------------------------------------------------------------------


class _Taker:
    """Non-overlapping spans over a token list: a later rule only takes what is still free."""

    def __init__(self, n: int):
        self.taken = [False] * n
        self.spans: list[tuple[int, int, str]] = []

    def free(self, a: int, b: int) -> bool:
        return not any(self.taken[a:b])

    def take(self, a: int, b: int, tag: str) -> None:
        i = a
        while i < b:
            if self.taken[i]:
                i += 1
                continue
            j = i
            while j < b and not self.taken[j]:
                j += 1
            self.spans.append((i, j, tag))
            for k in range(i, j):
                self.taken[k] = True
            i = j


def _emails(tokens: Sequence[str], nt: list[str], tk: _Taker) -> None:
    """Written addresses, then spoken "name dot name at domain dot anything"."""
    for i, t in enumerate(tokens):
        if _RE_EMAIL.search(t):
            tk.take(i, i + 1, "EMAIL")
    for i, t in enumerate(nt):
        if t != "at" or tk.taken[i]:
            continue
        j = i + 1
        dom_end = -1
        if j < len(nt) and _RE_WRITTEN_DOMAIN.fullmatch(nt[j]) and nt[j][0].isalpha():
            dom_end = j + 1
        elif j < len(nt) and nt[j] not in _NOT_A_DOMAIN:
            # any ending: "acme dot nl", "mail dot example dot co dot uk"
            while j + 2 < len(nt) and nt[j] and nt[j] not in ("dot", "at"):
                if nt[j + 1] in ("dot", ".") and re.fullmatch(r"[a-z][a-z0-9\-]{0,23}", nt[j + 2]):
                    dom_end = j + 3
                    j += 2
                    continue
                break
        if dom_end < 0:
            continue
        k = i - 1
        if k < 0 or nt[k] in ("", "is", "was", "me", "us", "them", "him", "her", "it", "look"):
            continue
        while k - 2 >= 0 and nt[k - 1] in ("dot", "underscore", "dash", "hyphen", "."):
            k -= 2
        cue_at = _has_cue(nt, i - 6, i, _EMAIL_CUES)
        if cue_at >= 0:
            # everything after "is"/"email"/"address" up to "at" is the local part
            start = cue_at
            for m in range(cue_at, i):
                if nt[m] in ("is", "it's", "its", "was", "it"):
                    start = m + 1
            k = min(k, start) if start < i else k
        tk.take(k, dom_end, "EMAIL")


def _ibans(tokens: Sequence[str], nt: list[str], tk: _Taker) -> None:
    """Written IBANs that pass mod 97 anywhere; anything IBAN-shaped after an "IBAN" cue."""
    for i, t in enumerate(nt):
        if tk.taken[i] or not _RE_IBAN_HEAD.match(t) or len(t) < 4:
            continue
        j = i + 1
        while j < len(nt) and not tk.taken[j] and _RE_ALNUM_GROUP.match(nt[j]):
            j += 1
        joined = "".join(nt[i:j])
        cue = _has_cue(nt, i - _CONTEXT_WINDOW, i, _IBAN_CUES) >= 0
        if iban_ok(joined) or (cue and len(joined) >= 10):
            tk.take(i, j, "IBAN")
    # spelled out after the cue: "G B eight two W E S T one two ..."
    for c in _cue_ends(nt, _IBAN_CUES):
        i = c
        while i < len(nt) and i < c + _CONTEXT_WINDOW and nt[i] in _LEAD_IN:
            i += 1
        j = i
        while j < len(nt) and not tk.taken[j]:
            t, raw = nt[j], tokens[j].strip(".,;:!?")
            spelled = (len(t) == 1 and t.isalpha()) or (raw.isupper() and len(raw) <= 4)
            numeric = token_kind(t) in ("digits", "word", "repeat", "hundred")
            if not (spelled or numeric or any(ch.isdigit() for ch in t) or t in JOINERS):
                break
            j += 1
        while j > i and nt[j - 1] in JOINERS:
            j -= 1
        if j - i >= 2:
            tk.take(i, j, "IBAN")


def _dates_of_birth(nt: list[str], tk: _Taker) -> None:
    """After born / birth / birthday / DOB: the date that follows, written or spoken."""
    for c in _cue_ends(nt, _DOB_CUES):
        i = c
        while i < len(nt) and i < c + _CONTEXT_WINDOW and not _date_core(nt[i]):
            if nt[i] not in _LEAD_IN and token_kind(nt[i]) != "filler":
                break
            i += 1
        if i < len(nt) and _date_core(nt[i]) and not tk.taken[i]:
            tk.take(i, _date_span(nt, i), "DOB")


def _spans(
    tokens: Sequence[str], partial: bool = False, expect: str | None = None
) -> list[tuple[int, int, str]]:
    """Redacted spans (start, end, TAG) over a token list; spans do not overlap."""
    nt = [norm(t) for t in tokens]
    # "@" written alone is the spoken "at".
    nt = [("at" if t == "@" else t) for t in nt]
    tk = _Taker(len(nt))
    take, taken = tk.take, tk.taken

    _emails(tokens, nt, tk)
    _ibans(tokens, nt, tk)
    _dates_of_birth(nt, tk)
    # Runs over what is still free: a run must not vanish because a date took its head.
    runs = find_runs([("\x00" if taken[i] else t) for i, t in enumerate(nt)])

    # Expiry: written MM/YY anywhere; after an expiry cue, the next short run (+ month name).
    for i, t in enumerate(nt):
        if _RE_EXPIRY.match(t) and not taken[i]:
            take(i, i + 1, "EXPIRY")
    for run in runs:
        cue = _has_cue(nt, run.start - _EXPIRY_WINDOW, run.start, _EXPIRY_CUES)
        month_before = run.start - 1 >= 0 and nt[run.start - 1] in MONTHS
        if cue < 0 and month_before:
            cue = _has_cue(nt, run.start - 1 - _EXPIRY_WINDOW, run.start - 1, _EXPIRY_CUES)
        if cue >= 0 and (3 <= len(run.digits) <= 6 or (month_before and len(run.digits) <= 4)):
            take(run.start - 1 if month_before else run.start, run.end, "EXPIRY")
            run.digits = ""
    for i, t in enumerate(nt):
        if t in MONTHS and not taken[i] and i + 1 < len(nt):
            cue = _has_cue(nt, i - _EXPIRY_WINDOW, i, _EXPIRY_CUES)
            if cue >= 0 and re.fullmatch(r"\d{2}|\d{4}", nt[i + 1] or "x"):
                take(i, i + 2, "EXPIRY")

    # CVV: after a security-code cue, the first run of 3-4 digits within a few tokens.
    for run in runs:
        if not run.digits or not tk.free(run.start, run.end):
            continue
        cue = _has_cue(nt, run.start - _CVV_WINDOW, run.start, _CVV_CUES)
        if cue >= 2 and nt[cue - 1] == "code" and nt[cue - 2] in _OTHER_CODES:
            cue = -1
        if cue >= 0 and 3 <= len(run.digits) <= 5:
            # 3-4 digits; 5 when the recogniser glued a filler digit on
            take(run.start, run.end, "CVV")
            run.digits = ""

    # Written SSN / phone formats.
    for i, t in enumerate(nt):
        if not taken[i] and _RE_SSN.match(t):
            take(i, i + 1, "ID")
        elif not taken[i] and _RE_PHONE.match(t):
            take(i, i + 1, "PHONE")

    # The remaining runs by length, checksum and context.
    min_run = 4 if partial else 6
    for run in runs:
        d = run.digits
        if not d or all(taken[run.start : run.end]):
            continue
        lo = run.start - _CONTEXT_WINDOW
        id_cue = _has_cue(nt, lo, run.start, _ID_CUES) >= 0
        phone_cue = _has_cue(nt, lo, run.start, _PHONE_CUES) >= 0
        card_cue = _has_cue(nt, lo, run.start, _CARD_CUES) >= 0
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
        elif n in (10, 11) and not run.spoken and _looks_like_phone(tokens[run.start : run.end]):
            tag = "PHONE"
        elif n >= min_run:
            tag = "NUMBER"
        if tag:
            take(run.start, run.end, tag)

    # A 3-4 digit run shortly after a card number is its security code (or expiry) even when
    # the recogniser garbled the cue ("you already called this one two three").
    card_ends = [b for _a, b, tag in tk.spans if tag == "CARD"]
    for run in runs:
        if not run.digits or not tk.free(run.start, run.end) or not 3 <= len(run.digits) <= 4:
            continue
        if any(0 <= run.start - b <= _AFTER_CARD_WINDOW for b in card_ends):
            year = len(run.digits) == 4 and run.digits.startswith("20")
            take(run.start, run.end, "EXPIRY" if year else "CVV")

    if expect:
        _expected(tokens, nt, tk, expect)
    _token_backstop(tokens, tk)
    merged: list[tuple[int, int, str]] = []
    for a, b, tag in sorted(tk.spans):
        if merged and merged[-1][1] == a and merged[-1][2] == tag:
            a = merged.pop()[0]  # "[CVV] [CVV]" -> "[CVV]": one answer, one tag
        merged.append((a, b, tag))
    return merged


def _expected(tokens: Sequence[str], nt: list[str], tk: _Taker, expect: str) -> None:
    """The utterance answers a question for `expect`: every number in it is that answer.

    Decimals count ("4.5." is how Whisper writes "four five"), so does any token with a digit
    in it ("6th", "A4"); for dates of birth and expiry dates, month names and ordinals too.
    """
    # A date in any answer goes whole ("March 1985" after a misheard question is still a date
    # of birth); for DOB/EXPIRY a month name or ordinal alone is enough.
    i = 0
    while i < len(nt):
        if not tk.taken[i] and (is_date_token(nt[i]) or numeric_at(nt, i)):
            j = _date_span(nt, i)
            dated = any(is_date_token(t) for t in nt[i:j])
            numbered = any(numeric_at(nt, k) for k in range(i, j))
            if dated and (numbered or expect in ("DOB", "EXPIRY")):
                tk.take(i, j, expect)
            i = j if dated else i + 1
        else:
            i += 1
    for run in find_runs(nt):
        tk.take(run.start, run.end, expect)
    for i, t in enumerate(tokens):
        if not tk.taken[i] and any(c.isdigit() for c in t):
            tk.take(i, i + 1, expect)
    # "for five three nine", "one to three": a homophone next to the answer's digits is a digit
    for order in (range(len(nt)), range(len(nt) - 1, -1, -1)):
        for i in order:
            near = (i > 0 and tk.taken[i - 1]) or (i + 1 < len(nt) and tk.taken[i + 1])
            if not tk.taken[i] and nt[i] in _HOMOPHONES and near:
                tk.take(i, i + 1, expect)


def _token_backstop(tokens: Sequence[str], tk: _Taker) -> None:
    """The final-text backstop, applied to tokens so words and text lose the same tokens."""
    pieces, offsets, pos = [], [], 0
    for i, t in enumerate(tokens):
        piece = "[X]" if tk.taken[i] else t
        offsets.append((pos, pos + len(piece)))
        pieces.append(piece)
        pos += len(piece) + 1
    joined = " ".join(pieces)
    for m in _RE_LONG_DIGITS.finditer(joined):
        hit = [i for i, (a, b) in enumerate(offsets) if a < m.end() and b > m.start()]
        if hit:
            tk.take(hit[0], hit[-1] + 1, "NUMBER")


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


def _check_expect(expect: str | None) -> None:
    if expect is not None and expect not in EXPECT_TAGS:
        raise ValueError(f"expect must be one of {EXPECT_TAGS} or None, got {expect!r}")


def redact(
    text: str, partial: bool = False, expect: str | None = None, language: str = "en"
) -> Redaction:
    """Replace sensitive spans of `text` with `[TAG]`s; keep everything else as it was.

    `partial=True` is for streaming partial results, which are cut mid-utterance: any run of
    four or more digits is hidden there too, because its continuation is not known yet.
    `expect="CVV"` (any of EXPECT_TAGS) says the text answers a question for that data, so
    every number in it -- and for DOB/EXPIRY every month name and ordinal -- is redacted.
    `language` (de, fr, es) reads its number words and cues as English ones (`redact_lang`).
    """
    _check_expect(expect)
    if not text:
        return Redaction(text="", counts={})
    matches = list(re.finditer(r"\S+", text))
    tokens = [m.group(0) for m in matches]
    counts: dict[str, int] = {}
    out: list[str] = []
    pos = 0
    read = to_english(tokens, language)
    for a, b, tag in _spans(read, partial=partial, expect=expect):
        first, last = tokens[a], tokens[b - 1]
        if is_tag(first) and is_tag(last) and a + 1 == b:
            continue  # an earlier pass's tag stays as it was
        lead = first[: len(first) - len(first.lstrip(_PUNCT))].replace("(", "")
        trail = last[len(last.rstrip(_PUNCT)) :]
        out.append(text[pos : matches[a].start()])
        out.append(f"{lead}[{tag}]{trail}")
        pos = matches[b - 1].end()
        counts[tag] = counts.get(tag, 0) + 1
    out.append(text[pos:])
    redacted = _backstop("".join(out), counts)
    return Redaction(text=redacted, counts=counts)


def redact_words(
    words: Sequence[Word], partial: bool = False, expect: str | None = None, language: str = "en"
) -> tuple[Word, ...]:
    """Redact a timed word list with the same rules as `redact()` (same `partial`, `expect`).

    Each word inside a redacted span becomes the span's tag (e.g. `[CARD]`) and keeps its own
    start/end/confidence, so timings and word counts survive while the content does not.
    """
    _check_expect(expect)
    tokens = [w.text.strip() or w.text for w in words]
    out = list(words)
    for a, b, tag in _spans(to_english(tokens, language), partial=partial, expect=expect):
        for i in range(a, b):
            if not is_tag(tokens[i]):
                out[i] = replace(out[i], text=f"[{tag}]")
    result: list[Word] = []
    for w in out:
        if _RE_LONG_DIGITS.search(w.text):
            w = replace(w, text="[NUMBER]")
        result.append(w)
    return tuple(result)
