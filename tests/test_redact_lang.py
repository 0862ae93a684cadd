"""Redaction in German, French and Spanish: card numbers, security codes, expiry dates and dates
of birth said with the language's number words never survive; ordinary numbers stay readable.

The PANs are drawn by hypothesis (every brand, 13-19 digits, Luhn-valid) and spoken digit by
digit or in pairs with each language's own words and connectors; a leak is checked on the digits
the words stand for, read by this file's own table (not the module's).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from leakcheck import card_numbers

from appliance.config import RedactionConfig
from appliance.stt.call_redaction import CallRedaction
from appliance.stt.redact import redact
from appliance.types import Transcript

DIGITS = {
    "de": ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"],
    "fr": ["zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"],
    "es": ["cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"],
}
# two-digit numbers as the language says them (for pairs: "fünfundvierzig", "quarante-cinq")
_DE_TENS = ["", "zehn", "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig", "siebzig",
            "achtzig", "neunzig"]  # fmt: skip
_DE_TEENS = ["zehn", "elf", "zwölf", "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn",
             "achtzehn", "neunzehn"]  # fmt: skip
_FR_TENS = ["", "dix", "vingt", "trente", "quarante", "cinquante", "soixante"]
_FR_TEENS = ["dix", "onze", "douze", "treize", "quatorze", "quinze", "seize", "dix-sept",
             "dix-huit", "dix-neuf"]  # fmt: skip
_ES_TENS = ["", "diez", "veinte", "treinta", "cuarenta", "cincuenta", "sesenta", "setenta",
            "ochenta", "noventa"]  # fmt: skip
_ES_TEENS = ["diez", "once", "doce", "trece", "catorce", "quince", "dieciséis", "diecisiete",
             "dieciocho", "diecinueve"]  # fmt: skip
_ES_VEINTI = ["veinte", "veintiuno", "veintidós", "veintitrés", "veinticuatro", "veinticinco",
              "veintiséis", "veintisiete", "veintiocho", "veintinueve"]  # fmt: skip
JOIN = {"de": ["und", "dann", "äh", "also"], "fr": ["et", "puis", "euh", "alors"],
        "es": ["y", "luego", "eh", "entonces"]}  # fmt: skip
CUE = {
    "de": "meine Kartennummer ist",
    "fr": "le numéro de ma carte est",
    "es": "el número de mi tarjeta es",
}


def pair(n: int, lang: str) -> str:
    a, b = divmod(n, 10)
    if lang == "de":
        if a == 0:
            return f"null {DIGITS['de'][b]}"
        if a == 1:
            return _DE_TEENS[b]
        unit = "ein" if b == 1 else DIGITS["de"][b]
        return _DE_TENS[a] if b == 0 else f"{unit}und{_DE_TENS[a]}"
    if lang == "fr":
        if a == 0:
            return f"zéro {DIGITS['fr'][b]}"
        if a == 1:
            return _FR_TEENS[b]
        if a in (7, 9):
            return ("soixante" if a == 7 else "quatre-vingt") + "-" + _FR_TEENS[b]
        head = "quatre-vingt" if a == 8 else _FR_TENS[a]
        if b == 0:
            return head
        return f"{head} et un" if b == 1 and a != 8 else f"{head}-{DIGITS['fr'][b]}"
    if a == 0:
        return f"cero {DIGITS['es'][b]}"
    if a == 1:
        return _ES_TEENS[b]
    if a == 2:
        return _ES_VEINTI[b]
    return _ES_TENS[a] if b == 0 else f"{_ES_TENS[a]} y {DIGITS['es'][b]}"


def _read_digits(text: str, lang: str) -> str:
    """The digits a text holds by this file's own reading: digit words and digits only (pairs
    are checked by their redaction tag, not re-parsed)."""
    table = {w: str(i) for i, w in enumerate(DIGITS[lang])}
    out = []
    for tok in re.findall(r"[\wäöüéèàçñ'-]+|\d+", text.lower()):
        if tok.isdigit():
            out.append(tok)
        elif tok in table and tok not in ("un", "uno"):
            out.append(table[tok])
    return "".join(out)


@pytest.mark.parametrize("lang", ["de", "fr", "es"])
@settings(max_examples=60, deadline=None)
@given(card=card_numbers(), style=st.sampled_from(["digits", "pairs"]), data=st.data())
def test_spoken_card_numbers_are_redacted(lang: str, card: tuple[str, str], style, data) -> None:
    _brand, pan = card
    words: list[str] = []
    if style == "digits":
        for i in range(0, len(pan), 4):
            words += [DIGITS[lang][int(d)] for d in pan[i : i + 4]]
            if data.draw(st.booleans()):
                words.append(data.draw(st.sampled_from(JOIN[lang])))
    else:
        for i in range(0, len(pan) - 1, 2):
            words.append(pair(int(pan[i : i + 2]), lang))
        if len(pan) % 2:
            words.append(DIGITS[lang][int(pan[-1])])
    cue = data.draw(st.booleans())
    text = (CUE[lang] + " " if cue else "") + " ".join(words)
    out = redact(text, language=lang).text
    assert "[CARD]" in out or "[NUMBER]" in out, (text, out)
    # no four digits of the card survive in a row, however they are written
    left = _read_digits(out, lang)
    assert not any(pan[i : i + 4] in left for i in range(len(pan) - 3)), (text, out)


@pytest.mark.parametrize(
    ("lang", "text", "tag"),
    [
        ("de", "die Prüfnummer ist sieben drei sieben", "[CVV]"),
        ("de", "gültig bis null vier siebenundzwanzig", "[EXPIRY]"),
        ("de", "geboren am zwölften März neunzehnhundertfünfundachtzig", "[DOB]"),
        ("fr", "le cryptogramme est sept cent trente-sept", "[CVV]"),
        ("fr", "date d'expiration zéro quatre vingt-sept", "[EXPIRY]"),
        ("fr", "née le douze mars mille neuf cent quatre-vingt-cinq", "[DOB]"),
        ("es", "el código de seguridad es siete tres siete", "[CVV]"),
        ("es", "vence el cero cuatro veintisiete", "[EXPIRY]"),
        ("es", "nací el doce de marzo de mil novecientos ochenta y cinco", "[DOB]"),
        ("de", "mein Telefon null eins sieben eins, zwei drei vier fünf sechs sieben", "[PHONE]"),
    ],
)
def test_cued_answers_are_redacted(lang: str, text: str, tag: str) -> None:
    out = redact(text, language=lang).text
    assert tag in out, out
    assert not re.search(r"\d", out)


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("de", "Ich habe zwei Kinder und eine Katze"),
        ("de", "Die Bestellung kam vor drei Wochen, das war am fünften Juni"),
        ("de", "Das kostet neunundneunzig Euro"),
        ("fr", "J'ai deux enfants et un chien"),
        ("fr", "Un moment s'il vous plaît, je reviens dans cinq minutes"),
        ("es", "Tengo dos hijos y una hija"),
        ("es", "Un momento, por favor, son las tres y media"),
    ],
)
def test_ordinary_numbers_stay_readable(lang: str, text: str) -> None:
    assert redact(text, language=lang).text == text


def test_six_number_words_are_a_number_in_every_language() -> None:
    for lang, text in (
        ("de", "vier fünf drei neun eins vier"),
        ("fr", "quatre cinq trois neuf un quatre"),
        ("es", "treinta y uno cuarenta y cinco sesenta y siete"),
    ):
        out = redact(text, language=lang).text
        assert "[NUMBER]" in out or "[CARD]" in out, (lang, out)


def test_english_is_unchanged_by_the_language_layer() -> None:
    text = "my card is four one one one one one one one one one one one one one one one"
    assert redact(text, language="en").text == redact(text).text == "my card is [CARD]"
    # German words read as English only when the call is German
    assert redact("vier eins eins eins eins eins eins", language="en").text.startswith("vier")


@pytest.mark.parametrize(
    ("lang", "prompt", "answer"),
    [
        ("de", "Und wie lautet die Prüfnummer auf der Rückseite?", "sieben drei sieben"),
        ("fr", "Et le cryptogramme au dos de la carte ?", "sept trois sept"),
        ("es", "¿Y el código de seguridad?", "siete tres siete"),
    ],
)
def test_call_context_arms_on_a_prompt_in_the_language(lang: str, prompt: str, answer: str) -> None:
    for auto_pause in (True, False):
        ctx = CallRedaction(RedactionConfig(auto_pause=auto_pause), language=lang)
        out = ctx.add(0, "agent", 0.0, 2.0, Transcript(prompt))
        out += ctx.add(1, "customer", 3.0, 4.0, Transcript(answer))
        out += ctx.close()
        answer_row = next(r for r in out if r.index == 1)
        if auto_pause:  # a payment prompt pauses transcription: nothing of the answer is kept
            assert answer_row.paused and answer_row.transcript.text == ""
        else:  # the prompt armed the call: the bare answer is the security code
            assert answer_row.transcript.text == "[CVV]" and "CVV" in answer_row.redacted
