"""What a call's utterances ask for, and how their numbers read: the judging helpers of
`appliance.stt.call_redaction` (pure functions on one utterance or one digit string).
"""

from __future__ import annotations

import re

from appliance.stt.redact_numbers import JOINERS, Run, card_brand, is_tag, luhn_ok, norm

__all__ = ["PAYMENT_KINDS", "cue_kinds", "asks", "number_groups", "classify"]

#: Prompt kinds whose answer is payment card data: they pause transcription automatically.
PAYMENT_KINDS = frozenset({"CARD", "EXPIRY", "CVV"})
# A number read over several utterances continues from the end of one to the start of the
# next ("okay so the first ones are 4539" / "1488 ..."): at most this many other words before
# the first number, or after the last, still count as "at the edge". Numbers mentioned
# mid-sentence ("it was 45 dollars and it came on the 5th of June") do not chain.
_EDGE_WORDS = 6
# Within one utterance, numbers at most this many words apart read as one ("four are 453").
_JOIN_WORDS = 3


# What an utterance asks for or announces, on normalised text ("what's the card number?").
_CUES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(p))
    for kind, p in (
        (
            "CARD",
            r"\bcard ?(number|no|details|digits)\b|\blong (card )?number\b"
            r"|\b(number|digits) on the (front|card)\b|\b(16|sixteen) ?digit"
            r"|\bgroups of (four|4)\b|\b(credit|debit|visa|master ?card|amex) (card )?number\b"
            r"|\bnumber (on|of) (your|the) card\b|\bpan\b",
        ),
        (
            "EXPIRY",
            r"\bexpir\w*|\bvalid (until|thru|through|till)\b|\bend date\b|\bexp date\b"
            r"|\bmonth and (the )?year\b",
        ),
        (
            "CVV",
            r"(?<!social )\bsecurity (code|number)\b|\bcv[vc]2?\b|\bcsc\b|\bcv2\b"
            r"|\b(digits|numbers|code|number) on the back\b|\b(three|3|four|4) ?digit (code|number)"
            r"|\bverification (code|number|value)\b|\blast (three|3) digits\b"
            r"|\bcode of security\b",  # the word order of "código de seguridad"
        ),
        ("DOB", r"\bdate of birth\b|\bbirth ?date\b|\bbirthday\b|\bdob\b|\bd\.o\.b\b|\bborn\b"),
        (
            "ID",
            r"\bsocial security\b|\bssn\b|\bsocial\b|\bnational insurance\b|\btax (id|number)\b"
            r"|\bpassport\b|\blicen[cs]e number\b|\bsin number\b",
        ),
        (
            "ACCOUNT",
            r"\baccount (number|no)\b|\bsort code\b|\brouting (number|no)\b|\bbank account\b",
        ),
        ("IBAN", r"\biban\b|\bi b a n\b"),
        ("PIN", r"\bpin\b|\bpass ?code\b"),
    )
)
_ASK = re.compile(
    r"\b(can|could|may|would|will) (i|you|we)\b|\bwhat('s| is| are)?\b|\bplease\b|\bread\b"
    r"|\bgive\b|\btell\b|\bprovide\b|\bneed\b|\bconfirm\b|\bgo ahead\b|\bready\b"
    r"|^(and|also|now|then|okay|ok|great|thanks|thank you)\b"
)


def _plain(text: str) -> str:
    """Lower-case words without punctuation, tags left out, for the cue patterns."""
    toks = [norm(t) for t in text.split() if not is_tag(t)]
    return " ".join(t for t in toks if t)


def cue_kinds(text: str) -> frozenset[str]:
    """Which sensitive data `text` asks for or announces: CARD, EXPIRY, CVV, DOB, ID, ..."""
    plain = _plain(text)
    return frozenset(kind for kind, pat in _CUES if pat.search(plain))


def asks(text: str) -> bool:
    """Whether an agent utterance is a request ("can I have ...", "and the expiry?")."""
    plain = _plain(text)
    return text.rstrip().endswith("?") or bool(_ASK.search(plain)) or len(plain.split()) <= 8


def number_groups(
    tokens: list[str], nt: list[str], runs: list[Run]
) -> tuple[tuple[int, ...], bool, bool]:
    """(digits per number group, a number starts the utterance, a number ends it).

    Positions count words only: fillers and connectors ("uh", "and", "okay") are skipped."""
    digits_at = {r.start: len(r.digits) for r in runs}
    numeric = {i for r in runs for i in range(r.start, r.end)}
    numeric |= {i for i, t in enumerate(tokens) if is_tag(t)}
    groups: list[int] = []
    gap = None  # words since the last number; None before the first
    lead = tail = False
    for i, t in enumerate(nt):
        if i in numeric:
            if gap is None:
                lead = sum(1 for w in nt[:i] if w not in JOINERS) <= _EDGE_WORDS
            if gap is None or gap > _JOIN_WORDS:
                groups.append(0)
            groups[-1] += digits_at.get(i, 0)
            gap = 0
        elif t not in JOINERS and gap is not None:
            gap += 1
    if gap is not None:
        tail = gap <= _EDGE_WORDS
    return tuple(groups), lead, tail


def _expiry_shape(d: str) -> bool:
    """MMYY, MYY, MMYYYY with a real month."""
    if len(d) == 3:
        return d[0] != "0"
    if len(d) in (4, 6):
        return 1 <= int(d[:2]) <= 12
    return False


def classify(digits: str, lengths: list[int], kinds: frozenset[str]) -> list[str]:
    """The tag of each piece (`lengths` digits each, in order) of a sensitive digit sequence.

    A Luhn-valid prefix of 13-19 digits in a brand's IIN range is the card; what follows it is
    an expiry (month 01-12) or a security code (3-4 digits). Otherwise the armed kind decides,
    with the shape of the digits where several kinds were asked for.
    """
    card_len = 0
    for n in range(min(19, len(digits)), 12, -1):
        if luhn_ok(digits[:n]) and card_brand(digits[:n]):
            card_len = n
            break
    rest = digits[card_len:]
    if card_len:
        # after the card: 3 digits or a 4-digit non-date are a security code, else an expiry
        cvv = len(rest) == 3 or (len(rest) == 4 and not _expiry_shape(rest))
        rest_tag = "NUMBER" if len(rest) > 7 else "CVV" if cvv else "EXPIRY"
    else:
        rest_tag = _kind_tag(rest, kinds)
    tags, offset = [], 0
    for n in lengths:
        tags.append("CARD" if card_len and offset < card_len else rest_tag)
        offset += n
    return tags


def _kind_tag(d: str, kinds: frozenset[str]) -> str:
    """The tag of a sensitive answer that is not a whole card number."""
    n = len(d)
    if "CARD" in kinds and n >= 12:
        return "CARD"
    if {"CVV", "EXPIRY"} <= kinds:
        return "EXPIRY" if n != 3 and _expiry_shape(d) or n in (1, 2, 5, 6) else "CVV"
    for kind in ("CVV", "EXPIRY", "DOB", "PIN", "ID", "IBAN", "ACCOUNT", "CARD", "NUMBER"):
        if kind in kinds:
            return kind
    if n >= 13 and luhn_ok(d):
        return "CARD"
    return "NUMBER"
