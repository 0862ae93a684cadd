"""Test helpers for redaction: card numbers of every major brand, the ways people and recognisers
say them, and an independent leak detector.

The detector deliberately does not reuse `appliance.stt.redact_numbers`: it has its own, simpler
reading of number words, so a parser bug in the module cannot hide a leak from the tests.
"""

from __future__ import annotations

import re

from hypothesis import strategies as st

UNIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEEN_WORDS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen"]
TEEN_WORDS += ["seventeen", "eighteen", "nineteen"]
TENS_WORDS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
ZEROS = ("zero", "oh", "o", "nought")
# Words people put between digit groups; the detector reads through them like the module must.
FILLERS = ["and", "then", "okay", "comma", "next", "uh", "um", "and then", "okay next", "so"]

# (brand, IIN prefixes, lengths): the ranges the module's brand table must accept.
BRANDS: list[tuple[str, list[str], list[int]]] = [
    ("visa", ["4"], [13, 16, 19]),
    ("mastercard", ["51", "52", "53", "54", "55"], [16]),
    ("mastercard-2", ["2221", "2300", "2500", "2720"], [16]),
    ("amex", ["34", "37"], [15]),
    ("discover", ["6011", "644", "649", "65"], [16, 17, 18, 19]),
    ("jcb", ["3528", "3550", "3589"], [16, 17, 18, 19]),
    ("diners", ["300", "305", "36"], [14]),
    ("diners-16", ["38", "39"], [16]),
    ("unionpay", ["62"], [16, 17, 18, 19]),
    ("maestro", ["5018", "5020", "5038", "6304", "6759"], [13, 15, 16, 19]),
]


def luhn_complete(body: str) -> str:
    """Append the Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


@st.composite
def card_numbers(draw, brands=BRANDS) -> tuple[str, str]:
    """(brand, Luhn-valid PAN) of 13 to 19 digits."""
    brand, prefixes, lengths = draw(st.sampled_from(brands))
    prefix = draw(st.sampled_from(prefixes))
    length = draw(st.sampled_from(lengths))
    n = length - 1 - len(prefix)
    body = prefix + draw(st.text("0123456789", min_size=n, max_size=n))
    return brand, luhn_complete(body)


def digit_words(digits: str, zero: str = "zero", repeats: bool = False) -> list[str]:
    """'4455' -> four four five five ('double four double five' with repeats)."""
    out: list[str] = []
    i = 0
    while i < len(digits):
        d = digits[i]
        n = 1
        while repeats and i + n < len(digits) and digits[i + n] == d and n < 3:
            n += 1
        word = zero if d == "0" else UNIT_WORDS[int(d)]
        out += (["triple"] if n == 3 else ["double"] if n == 2 else []) + [word]
        i += n
    return out


def pair_words(digits: str, zero: str = "oh") -> list[str]:
    """'5425' -> fifty four twenty five; '03' -> oh three; '10' -> ten; odd tail one digit."""
    out: list[str] = []
    for i in range(0, len(digits) - 1, 2):
        a, b = int(digits[i]), int(digits[i + 1])
        if a == 0:
            out += [zero, UNIT_WORDS[b] if b else zero]
        elif a == 1:
            out.append(TEEN_WORDS[b])
        else:
            out.append(TENS_WORDS[a])
            if b:
                out.append(UNIT_WORDS[b])
    if len(digits) % 2:
        out.append(UNIT_WORDS[int(digits[-1])] if digits[-1] != "0" else zero)
    return out


# How Whisper tiny.en wrote espeak-ng digit groups (measured): "4-5-3-9", "1.4888.", "646 7".
def whisper_style(digits: str, style: int) -> str:
    if style == 0:
        return "-".join(digits)
    if style == 1:
        return digits[0] + "." + digits[1:] + "." if len(digits) > 1 else digits + "."
    if style == 2:
        return digits[:-1] + " " + digits[-1] if len(digits) > 1 else digits
    return ", ".join(digits)


FORMS = ("digits", "dashed", "words", "oh", "repeats", "pairs", "whisper")


def render(digits: str, form: str, style: int = 0) -> str:
    """One way of saying a digit chunk."""
    if form == "digits":
        return digits
    if form == "dashed":
        return "-".join(digits[i : i + 2] for i in range(0, len(digits), 2))
    if form == "words":
        return " ".join(digit_words(digits))
    if form == "oh":
        return " ".join(digit_words(digits, "oh"))
    if form == "repeats":
        return " ".join(digit_words(digits, "oh", repeats=True))
    if form == "pairs":
        return " ".join(pair_words(digits))
    return whisper_style(digits, style)


@st.composite
def spoken_chunks(draw, digits: str, min_parts: int = 2, max_parts: int = 5) -> list[str]:
    """`digits` cut at random points into 2-5 chunks, each said its own way, fillers inside."""
    k = draw(st.integers(min(min_parts, len(digits)), min(max_parts, len(digits))))
    cuts = sorted(draw(st.sets(st.integers(1, len(digits) - 1), min_size=k - 1, max_size=k - 1)))
    bounds = [0, *cuts, len(digits)]
    chunks = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        piece = digits[a:b]
        # sometimes a filler between the sub-groups of one chunk: "4539 and 14"
        if len(piece) >= 4 and draw(st.booleans()):
            m = draw(st.integers(1, len(piece) - 1))
            f = draw(st.sampled_from(FILLERS))
            text = " ".join(
                [render(piece[:m], draw(st.sampled_from(FORMS)), draw(st.integers(0, 3))), f]
                + [render(piece[m:], draw(st.sampled_from(FORMS)), draw(st.integers(0, 3)))]
            )
        else:
            text = render(piece, draw(st.sampled_from(FORMS)), draw(st.integers(0, 3)))
        lead = draw(
            st.sampled_from(
                ["", "", "it's", "uh", "okay", "and", "then", "next is", "the next four are",
                 "okay so the first ones are", "then it's", "after that"]
            )
        )  # fmt: skip
        chunks.append(f"{lead} {text}".strip())
    return chunks


# --- the independent detector ----------------------------------------------------------------

_UNITS = {w: str(i) for i, w in enumerate(UNIT_WORDS)} | {z: "0" for z in ZEROS}
_TEENS = {w: str(10 + i) for i, w in enumerate(TEEN_WORDS)}
_TENS = {w: str(i) for i, w in enumerate(TENS_WORDS) if w}
_SKIP = {
    "and", "then", "okay", "ok", "comma", "next", "uh", "um", "so", "dash", "hyphen", "slash",
    "space", "is", "it's", "its", "that's", "yes", "yeah", "right", "sorry", "again", "er", "ah",
    "mm", "hmm", "-", "/",
}  # fmt: skip
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def digit_runs(text: str) -> list[str]:
    """Digit strings a reader could take from `text`: digits and number words in a row, with
    separators, punctuation and filler words between them read through."""
    text = _UUID.sub(" UUID ", text.lower())
    text = re.sub(r"\b\d{1,2}:\d{2}\b", " TIME ", text)  # times of day stay readable by policy
    tokens = [t for t in re.split(r"[\s,;:!?()\"]+", text) if t]
    runs: list[str] = []
    cur = ""
    tens = ""  # "forty" waiting for a unit ("forty five" -> 45)
    times = 1  # "double"/"triple" waiting for what it repeats

    def emit(digits: str) -> None:
        nonlocal cur, times
        cur += digits * times if len(digits) <= 2 else digits[0] * (times - 1) + digits
        times = 1

    def brk(*extra: str) -> None:
        nonlocal cur, tens, times
        if tens:
            emit(tens)
            tens = ""
        runs.extend([cur, *extra])
        cur, times = "", 1

    for raw in tokens:
        for tok in [p for p in re.split(r"[.\-/]+", raw) if p] or [raw]:
            if tok[0] in "$£€" or tok.startswith("["):
                brk()  # an amount or a tag: what a reader takes in a row ends here
            elif any(c.isdigit() for c in tok) and re.search(r"[a-z]", tok.rstrip("stndrh")):
                brk(*re.findall(r"\d+", tok))  # "GB82", "ABC1234567": digits of their own
            elif any(c.isdigit() for c in tok) or tok in _UNITS or tok in _TEENS:
                d = "".join(c for c in tok if c.isdigit()) or _UNITS.get(tok) or _TEENS[tok]
                if tens and tok in _UNITS and _UNITS[tok] != "0":
                    emit(tens[0] + d)
                else:
                    if tens:
                        emit(tens)
                    emit(d)
                tens = ""
            elif tok in _TENS:
                if tens:
                    emit(tens)
                if times > 1:
                    emit(_TENS[tok] + "0")
                    tens = ""
                else:
                    tens = _TENS[tok] + "0"
            elif tok in ("double", "triple"):
                if tens:
                    emit(tens)
                    tens = ""
                times = 2 if tok == "double" else 3
            elif tok == "hundred":
                if tens:
                    emit(tens)
                    tens = ""
                emit("00")
            elif tok not in _SKIP:
                brk()
    brk()
    return [r for r in runs if r]


def grams(digits: str, n: int = 4) -> set[str]:
    return {digits[i : i + n] for i in range(len(digits) - n + 1)}


def leaks(text: str, secret: str, n: int = 4, max_run: int = 6) -> list[str]:
    """What in `text` gives away `secret` (n digits of it in a row) or any run >= max_run."""
    found = []
    for run in digit_runs(text):
        if len(run) >= max_run:
            found.append(f"run of {len(run)} digits: {run}")
        hit = grams(secret, n) & grams(run, n) if len(secret) >= n else set()
        if len(secret) < n and secret in run:
            hit = {secret}
        if hit:
            found.append(f"{sorted(hit)} of {secret} in {run}")
    return found
