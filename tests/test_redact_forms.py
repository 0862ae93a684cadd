"""Redaction of one text (issue 16): connectors between groups, cards of every brand, e-mails
with any ending, dates of birth, IBANs, SSNs, `expect=`, and word lists that lose exactly what
the text loses. The leak detector is tests/leakcheck.py (independent of the module's parser).

Policy for what stays readable (docs/stt.md): amounts ($1,250.50, "ninety nine dollars"),
durations ("45 minutes"), times ("10:30"), dates with a month name ("the 5th of June", "12 March
2024"), years, and numbers of up to five digits with no cue. All-digit dates ("12/03/2024")
carry six digits and go as [NUMBER]: the six-digit invariant wins over readability.
"""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from leakcheck import FILLERS, FORMS, card_numbers, digit_runs, leaks, render

from appliance.stt.redact import EXPECT_TAGS, Redaction, redact, redact_words
from appliance.stt.redact_numbers import card_brand, iban_ok, luhn_ok
from appliance.types import Word

EXAMPLES = int(os.environ.get("REDACT_EXAMPLES", "200"))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PLAIN = ["i", "would", "like", "to", "pay", "the", "bill", "please", "thanks", "well", "hello",
         "balance", "today", "sure", "great", "now", "just", "let", "me", "check", "for", "you"]  # fmt: skip


def words_of(text: str) -> list[Word]:
    return [Word(t, 0.4 * i, 0.4 * i + 0.3, 0.9) for i, t in enumerate(text.split())]


def stored(text: str, **kw) -> list[str]:
    """What would be stored for `text`: the redacted text and the joined redacted words."""
    return [redact(text, **kw).text, " ".join(w.text for w in redact_words(words_of(text), **kw))]


@FAST
@given(
    card=card_numbers(),
    data=st.data(),
    before=st.lists(st.sampled_from(PLAIN), max_size=5),
    after=st.lists(st.sampled_from(PLAIN), max_size=5),
)
def test_groups_joined_by_fillers_never_survive(card, data, before, after) -> None:
    """'4111 and 1111 then 1111 okay 1111': no cue, any brand, any form, any filler."""
    _brand, pan = card
    size = data.draw(st.integers(2, 5))
    groups = [pan[i : i + size] for i in range(0, len(pan), size)]
    parts = []
    for k, g in enumerate(groups):
        if k:
            parts.append(data.draw(st.sampled_from(FILLERS)))
        parts.append(render(g, data.draw(st.sampled_from(FORMS)), data.draw(st.integers(0, 3))))
    text = " ".join([*before, *parts, *after])
    for out in stored(text):
        assert not leaks(out, pan), (text, out)
    kept = [t for t in redact(text).text.split() if "[" not in t]
    assert kept == [*before, *after], (text, redact(text).text)


@pytest.mark.parametrize("joiner", ["and", "then", "okay", "comma", "next", "uh", "and then"])
@pytest.mark.parametrize("spoken", [False, True])
def test_issue_examples_with_connectors(joiner: str, spoken: bool) -> None:
    group = "four one one one" if spoken else "4111"
    other = "one one one one" if spoken else "1111"
    text = f" {joiner} ".join([group, other, other, other])
    for out in stored(text):
        assert not digit_runs(out), (text, out)


@pytest.mark.parametrize(
    ("pan", "brand"),
    [
        ("4111111111111111", "visa"),
        ("4222222222222", "visa"),
        ("5425233430109903", "mastercard"),
        ("2223000048410010", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", "discover"),
        ("3530111333300000", "jcb"),
        ("36227206271667", "diners"),
        ("6200000000000005", "unionpay"),
        ("6759649826438453", "maestro"),
    ],
)
def test_brand_ranges(pan: str, brand: str) -> None:
    assert luhn_ok(pan) and card_brand(pan) == brand
    assert redact(f"it's {pan}").text == "it's [CARD]"


@FAST
@given(card_numbers())
def test_every_generated_brand_is_known(card) -> None:
    _brand, pan = card
    assert 13 <= len(pan) <= 19 and luhn_ok(pan) and card_brand(pan) is not None


# --- word lists: exactly what the text loses -------------------------------------------------

TOKENS = ["4111", "-1111-", "1111.", "-1111", "(555)", "4.5.", "1.4888.", "646", "7", "and",
          "then", "okay", "four", "one", "oh", "double", "fifty", "card", "number", "the", "is",
          "security", "code", "expires", "04/27", "born", "March", "12th", "1985", "thanks", "at",
          "gmail", "dot", "com", "nl", "jsmith", "$45", "dollars", "10:30", "GB82", "WEST", "uh"]  # fmt: skip


@FAST
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=24))
def test_words_lose_exactly_what_the_text_loses(tokens) -> None:
    text = " ".join(tokens)
    words = redact_words(words_of(text))
    assert len(words) == len(tokens)
    kept_words = [w.text for w in words if "[" not in w.text]
    kept_text = [t for t in redact(text).text.split() if "[" not in t]
    assert kept_words == kept_text, (text, redact(text).text, [w.text for w in words])
    for out in (redact(text).text, " ".join(w.text for w in words)):
        assert all(len(r) < 6 for r in digit_runs(out)), (text, out)


def test_issue_word_tokens() -> None:
    """Whisper's word list for "4111-1111-1111-1111" and "... 1111." keeps its punctuation."""
    for toks in (["4111", "-1111", "-1111", "-1111"], ["4111", "-1111-", "1111.", "1111."]):
        out = redact_words([Word(t, i, i + 0.5) for i, t in enumerate(toks)])
        assert [w.text for w in out] == ["[CARD]"] * 4
        assert redact(" ".join(toks)).text.rstrip(".") == "[CARD]"


# --- other personal data ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "jsmith at acme dot nl",
        "my email is jsmith at acme dot nl",
        "it's j dot smith at mail dot acme dot ch thanks",
        "send it to jsmith@acme.nl",
        "jsmith at acme.nl",
        "my address is anna underscore b at posteo dot de",
    ],
)
def test_emails_with_any_ending(text: str) -> None:
    r = redact(text)
    assert r.counts.get("EMAIL") == 1, r.text
    assert not re.search(r"smith|acme|posteo|anna", r.text)


@pytest.mark.parametrize(
    "text",
    ["I was at the shop dot", "look at this dot", "we met at home dot com never", "at work"],
)
def test_not_emails(text: str) -> None:
    assert redact(text) == Redaction(text, {})


@pytest.mark.parametrize(
    "text",
    [
        "I was born 12 March 1985",
        "born on the twelfth of march nineteen eighty five",
        "my date of birth is 12/03/1985",
        "DOB 03-12-85",
        "my birthday is March 12th, 1985",
        "date of birth, uh, it's the third of may two thousand and one",
        "I was born in 1985",
    ],
)
def test_dates_of_birth(text: str) -> None:
    r = redact(text)
    assert r.counts.get("DOB") == 1, r.text
    low = r.text.lower()
    assert not digit_runs(low) and not re.search(r"march|may|twelfth|third|nineteen", low), low


@pytest.mark.parametrize(
    "text",
    [
        "my IBAN is GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "the account is DE89 3704 0044 0532 0130 00",
        "iban G B eight two W E S T one two three four five six",
    ],
)
def test_iban_with_country_code_and_check_digits(text: str) -> None:
    r = redact(text)
    assert r.counts.get("IBAN") == 1, r.text
    assert not re.search(r"GB|DE|82|89|WEST|\d", r.text.replace("IBAN", "")), r.text


def test_iban_check() -> None:
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and iban_ok("DE89370400440532013000")
    assert not iban_ok("GB83 WEST 1234 5698 7654 32") and not iban_ok("hello")


@pytest.mark.parametrize(
    "text",
    [
        "my social is 123-45-6789",
        "social security number one two three, four five, six seven eight nine",
        "SSN 123 45 6789",
    ],
)
def test_ssn(text: str) -> None:
    r = redact(text)
    assert r.counts.get("ID") == 1, r.text
    assert not digit_runs(r.text)


# --- expect: the text is a known answer ------------------------------------------------------


@pytest.mark.parametrize(
    ("expect", "text", "out"),
    [
        ("CVV", "737", "[CVV]"),
        ("CVV", "uh it's seven three seven", "uh it's [CVV]"),
        ("CVV", "4.5.", "[CVV]."),
        ("CVV", "one moment please", "one moment please"),
        ("EXPIRY", "oh eight twenty nine", "[EXPIRY]"),
        ("EXPIRY", "August 2029", "[EXPIRY]"),
        ("DOB", "the 12th of March 1985", "the [DOB]"),
        ("DOB", "twelfth of march", "[DOB]"),
        ("ID", "six seven eight nine", "[ID]"),
        ("CARD", "1, 4, 8, 8", "[CARD]"),
        ("PIN", "it's 0 4 2 7 okay", "it's [PIN] okay"),
        ("CVV", "for five three", "[CVV]"),
        ("CVV", "But wealth at March 1985.", "But wealth at [CVV]."),
        ("CVV", "it's march", "it's march"),
        ("CARD", "one to three for", "[CARD]"),
        ("CVV", "it's for you", "it's for you"),
    ],
)
def test_expect(expect: str, text: str, out: str) -> None:
    assert redact(text, expect=expect).text == out
    words = [w.text for w in redact_words(words_of(text), expect=expect)]
    assert [t for t in words if "[" not in t] == [t for t in out.split() if "[" not in t]


def test_expect_rejects_unknown_tags() -> None:
    assert "EMAIL" not in EXPECT_TAGS
    with pytest.raises(ValueError):
        redact("123", expect="EMAIL")


def test_re_redaction_keeps_tags() -> None:
    first = redact("my card is 4111 1111 1111 1111 and the code is 123").text
    assert redact(first).text == first
    assert redact(first, expect="CARD").text == first


# --- what stays readable ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I'm calling about order 4521",
        "order number 77812",
        "I paid $1,250.50 yesterday",
        "it was ninety nine dollars",
        "I waited 45 minutes",
        "meet me at 10:30 and then 11:45",
        "it arrived on the 5th of June",
        "it's 12 March 2024",
        "I've been a customer since 2019",
        "I have two kids and three dogs",
        "one moment please",
        "the zip code is 90210",
        "the last four digits are 1234",
        "I was born and raised in Texas",
        "my birthday party is next week",
    ],
)
def test_ordinary_numbers_stay_readable(text: str) -> None:
    assert redact(text) == Redaction(text, {})
    assert [w.text for w in redact_words(words_of(text))] == text.split()


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("12/03/2024", "[NUMBER]"),
        ("in 2019 and 2020", "in [NUMBER]"),
        ("order 4521 and 77", "order [NUMBER]"),
    ],
)
def test_six_digits_win_over_readability(text: str, out: str) -> None:
    assert redact(text).text == out
