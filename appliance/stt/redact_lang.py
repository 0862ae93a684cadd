"""German, French and Spanish for redaction: each token read as the English token it stands for.

Why a translation and not a second rule set: the PCI rules (`appliance.stt.redact`, the call
context in `appliance.stt.call_redaction`) are tested deeply in English (Luhn, brand ranges,
runs across fillers, six-digit invariants). Reading "vier eins eins eins" as "four one one one",
"einundzwanzig" as "21", "Kartennummer" as "card" and "und" as "and" gives every language the
same rules and the same tests. The mapping is one token to one token, so the spans the English
rules find are spans of the original text, which keeps its own words outside them.

Numbers: units, teens and tens become English number words; compounds become digits
("einundzwanzig", "quatre-vingt-dix-neuf", "veintitrés", "doscientos"); "et"/"y" inside a
number ("vingt et un", "treinta y uno") becomes a filler so the parts join as in English; the
words for "one" that are also articles (ein, eine, un, une, uno, una) count as "one" only next to
another number. Ordinals become "21st"-style tokens and month names English ones (dates of
birth, expiry dates). Cues ("Karte", "carte", "tarjeta", "Prüfnummer", "cryptogramme", "código",
"Ablaufdatum", "vencimiento", "geboren", "née", ...) become the English cue words.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from appliance.stt.redact_numbers import is_tag

__all__ = ["LANGUAGES", "to_english", "english_text"]

LANGUAGES = ("en", "de", "fr", "es")
"""Languages redaction reads (others are read as English: digits still count)."""

_EN_UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_EN_TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
             "seventeen", "eighteen", "nineteen")  # fmt: skip
_EN_TENS = {20: "twenty", 30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy",
            80: "eighty", 90: "ninety"}  # fmt: skip
_EN_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
              "september", "october", "november", "december")  # fmt: skip


def _fold(s: str) -> str:
    """Lower case without accents ("fünf" -> "funf", "número" -> "numero", "dreißig" ->
    "dreissig"), so a recogniser's spelling variants meet one table."""
    s = s.lower().replace("ß", "ss")
    return "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")


def _en_number(n: int) -> str:
    """English token for a number: a word where English has one word, else digits."""
    if n < 10:
        return _EN_UNITS[n]
    if n < 20:
        return _EN_TEENS[n - 10]
    if n in _EN_TENS:
        return _EN_TENS[n]
    return str(n)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# --- per-language tables (accents folded) ------------------------------------------------------

_DE_UNITS = {"null": 0, "eins": 1, "zwei": 2, "zwo": 2, "drei": 3, "vier": 4, "funf": 5,
             "fuenf": 5, "sechs": 6, "sieben": 7, "acht": 8, "neun": 9}  # fmt: skip
_DE_TEENS = {"zehn": 10, "elf": 11, "zwolf": 12, "zwoelf": 12, "dreizehn": 13, "vierzehn": 14,
             "funfzehn": 15, "sechzehn": 16, "siebzehn": 17, "achtzehn": 18,
             "neunzehn": 19}  # fmt: skip
_DE_TENS = {"zwanzig": 20, "dreissig": 30, "vierzig": 40, "funfzig": 50, "sechzig": 60,
            "siebzig": 70, "achtzig": 80, "neunzig": 90}  # fmt: skip
_FR_UNITS = {"zero": 0, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "six": 6, "sept": 7,
             "huit": 8, "neuf": 9}  # fmt: skip
_FR_TEENS = {"dix": 10, "onze": 11, "douze": 12, "treize": 13, "quatorze": 14, "quinze": 15,
             "seize": 16}  # fmt: skip
_FR_TENS = {"vingt": 20, "vingts": 20, "trente": 30, "quarante": 40, "cinquante": 50,
            "soixante": 60}  # fmt: skip
_ES_UNITS = {"cero": 0, "uno": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6,
             "siete": 7, "ocho": 8, "nueve": 9}  # fmt: skip
_ES_TEENS = {"diez": 10, "once": 11, "doce": 12, "trece": 13, "catorce": 14, "quince": 15,
             "dieciseis": 16, "diecisiete": 17, "dieciocho": 18, "diecinueve": 19}  # fmt: skip
_ES_TENS = {"veinte": 20, "treinta": 30, "cuarenta": 40, "cincuenta": 50, "sesenta": 60,
            "setenta": 70, "ochenta": 80, "noventa": 90}  # fmt: skip
_ES_HUNDREDS = {"doscientos": 200, "doscientas": 200, "trescientos": 300, "trescientas": 300,
                "cuatrocientos": 400, "cuatrocientas": 400, "quinientos": 500,
                "quinientas": 500, "seiscientos": 600, "seiscientas": 600, "setecientos": 700,
                "setecientas": 700, "ochocientos": 800, "ochocientas": 800,
                "novecientos": 900, "novecientas": 900}  # fmt: skip

_ONE_ARTICLES = {"de": {"ein", "eine", "einen", "einem"}, "fr": {"un", "une"},
                 "es": {"un", "una"}}  # fmt: skip
"""Words for "one" that are also articles: a number only next to another number."""
_NUMBER_AND = {"de": set(), "fr": {"et"}, "es": {"y"}}
"""The "and" inside a number ("vingt et un", "treinta y uno"): a filler there."""

_WORDS: dict[str, dict[str, str]] = {
    "de": {
        "hundert": "hundred", "tausend": "thousand", "doppel": "double", "dreifach": "triple",
        "und": "and", "dann": "then", "ah": "uh", "ahm": "um", "oh": "uh", "hm": "hmm",
        "also": "so", "ja": "yes", "genau": "right", "nochmal": "again", "noch": "again",
        "karte": "card", "kreditkarte": "card", "kartennummer": "pan", "debitkarte": "card",
        "ec-karte": "card", "girokarte": "card", "nummer": "number", "konto": "account",
        "kontonummer": "account", "prufnummer": "cvv", "prufziffer": "cvv",
        "kartenprufnummer": "cvv", "sicherheitscode": "cvv", "sicherheitsnummer": "cvv",
        "code": "code", "pin": "pin", "ablaufdatum": "expiry", "ablauf": "expiry",
        "verfallsdatum": "expiry", "lauft": "expires", "gultig": "valid", "bis": "until",
        "geboren": "born", "geburtsdatum": "birthdate", "geburtstag": "birthday",
        "telefon": "phone", "telefonnummer": "phone", "rufnummer": "phone", "handy": "mobile",
        "handynummer": "mobile", "mobilnummer": "mobile", "ausweis": "passport",
        "ausweisnummer": "passport", "personalausweis": "passport", "reisepass": "passport",
        "pass": "passport", "steuernummer": "passport", "steuer-id": "passport",
        "sozialversicherungsnummer": "ssn", "rentenversicherungsnummer": "ssn",
        "januar": "january", "janner": "january", "februar": "february", "marz": "march",
        "mai": "may", "juni": "june", "juli": "july", "oktober": "october",
        "dezember": "december", "am": "on", "im": "in", "vom": "of", "der": "the",
        "den": "the", "dem": "the", "des": "of", "ist": "is", "lautet": "is",
        "ihre": "your", "ihr": "your", "ihrer": "your", "deine": "your", "dein": "your",
        "ruckseite": "back", "auf": "on",
    },
    "fr": {
        "cent": "hundred", "cents": "hundred", "mille": "thousand", "double": "double",
        "triple": "triple", "et": "and", "puis": "then", "ensuite": "then", "euh": "uh",
        "alors": "so", "oui": "yes", "encore": "again", "carte": "card", "numero": "number",
        "compte": "account", "cryptogramme": "cvv", "code": "code", "securite": "security",
        "sociale": "social", "expiration": "expiry", "expire": "expires", "validite": "valid",
        "jusqu'a": "until", "ne": "born", "nee": "born", "naissance": "birth",
        "anniversaire": "birthday", "telephone": "phone", "portable": "mobile",
        "passeport": "passport", "janvier": "january", "fevrier": "february", "mars": "march",
        "avril": "april", "mai": "may", "juin": "june", "juillet": "july", "aout": "august",
        "septembre": "september", "octobre": "october", "novembre": "november",
        "decembre": "december", "premier": "1st", "premiere": "1st", "le": "the",
        "la": "the", "de": "of", "du": "of", "est": "is",
        "votre": "your", "vos": "your", "ta": "your", "ton": "your", "dos": "back",
    },
    "es": {
        "cien": "hundred", "ciento": "hundred", "mil": "thousand", "doble": "double",
        "triple": "triple", "y": "and", "luego": "then", "despues": "then", "eh": "uh",
        "em": "um", "entonces": "so", "si": "yes", "vale": "okay", "otra": "again",
        "tarjeta": "card", "numero": "number", "cuenta": "account", "codigo": "code",
        "seguridad": "security", "cvv": "cvv", "vencimiento": "expiry", "caducidad": "expiry",
        "vence": "expires", "caduca": "expires", "valida": "valid", "hasta": "until",
        "nacimiento": "birth", "naci": "born", "nacido": "born", "nacida": "born",
        "cumpleanos": "birthday", "telefono": "phone", "movil": "mobile", "celular": "mobile",
        "pasaporte": "passport", "dni": "passport", "nie": "passport", "enero": "january",
        "febrero": "february", "marzo": "march", "abril": "april", "mayo": "may",
        "junio": "june", "julio": "july", "agosto": "august", "septiembre": "september",
        "setiembre": "september", "octubre": "october", "noviembre": "november",
        "diciembre": "december", "primero": "1st", "primer": "1st", "el": "the",
        "la": "the", "de": "of", "del": "of", "es": "is",
        "su": "your", "sus": "your", "tu": "your", "reverso": "back", "detras": "back",
    },
}  # fmt: skip
_DE_ORD = re.compile(r"^(.+?)(?:s)?(?:te|ter|ten|tes|tem)$")
_FR_ORD = re.compile(r"^(.+?)iemes?$")


def _de_number(w: str) -> int | None:
    if w in _DE_UNITS:
        return _DE_UNITS[w]
    if w in _DE_TEENS:
        return _DE_TEENS[w]
    if w in _DE_TENS:
        return _DE_TENS[w]
    m = re.match(r"^(ein|zwei|drei|vier|funf|sechs|sieben|acht|neun)und(\w+zig|dreissig)$", w)
    if m and m.group(2) in _DE_TENS:
        unit = 1 if m.group(1) == "ein" else _DE_UNITS[m.group(1)]
        return _DE_TENS[m.group(2)] + unit
    m = re.match(r"^(\w*?)hundert(\w*)$", w)
    if m:
        head = 1 if m.group(1) in ("", "ein") else _de_number(m.group(1))
        rest = _de_number(m.group(2)) if m.group(2) else 0
        if head is not None and head < 100 and rest is not None and rest < 100:
            return head * 100 + rest
    return None


def _fr_number(w: str) -> int | None:
    parts = [p for p in w.split("-") if p]
    if not parts or (len(parts) == 1 and parts[0] in ("un", "une")):
        return None  # the article; "one" only next to another number (to_english)
    total, i = 0, 0
    values = {**_FR_UNITS, **_FR_TEENS, **_FR_TENS, "un": 1, "une": 1}
    while i < len(parts):
        p = parts[i]
        if p == "et":
            i += 1
            continue
        if p in ("quatre",) and i + 1 < len(parts) and parts[i + 1] in ("vingt", "vingts"):
            total += 80
            i += 2
            continue
        if p not in values:
            return None
        total += values[p]
        i += 1
    return total if len(parts) > 1 or parts[0] in values else None


def _es_number(w: str) -> int | None:
    for table in (_ES_UNITS, _ES_TEENS, _ES_TENS, _ES_HUNDREDS):
        if w in table:
            return table[w]
    m = re.match(r"^veinti(un|uno|una|dos|tres|cuatro|cinco|seis|siete|ocho|nueve)$", w)
    if m:
        unit = m.group(1)
        return 20 + (1 if unit in ("un", "uno", "una") else _ES_UNITS[unit])
    return None


_NUMBER = {"de": _de_number, "fr": _fr_number, "es": _es_number}


def _ordinal_value(w: str, language: str) -> int | None:
    if language == "de":
        if w in ("erste", "ersten", "erster", "erstes"):
            return 1
        if w in ("dritte", "dritten", "dritter"):
            return 3
        if w in ("siebte", "siebten", "siebter"):
            return 7
        if w in ("achte", "achten", "achter"):
            return 8
        m = _DE_ORD.match(w)
        return _de_number(m.group(1)) if m else None
    if language == "fr":
        m = _FR_ORD.match(w)
        if not m:
            return None
        stem = m.group(1)
        for end, fix in (("cinqu", "cinq"), ("neuv", "neuf"), ("z", "ze"), ("t", "te")):
            if stem.endswith(end) and _fr_number(stem) is None:
                candidate = stem[: -len(end)] + fix
                if _fr_number(candidate) is not None:
                    return _fr_number(candidate)
        return _fr_number(stem)
    return None


_ELISION = re.compile(r"^(?:d|l|j|qu|n|s|c|m|t)['’](.+)$")


def _translate(core: str, language: str) -> tuple[str, int | None]:
    """(English token or "", numeric value or None) of one token's folded core."""
    if language == "fr" and (m := _ELISION.match(core)):
        core = m.group(1)  # "d'expiration" reads as "expiration"
    number = _NUMBER[language](core)
    if number is not None:
        return _en_number(number), number
    word = _WORDS[language].get(core)
    if word is not None:
        return word, None
    ordinal = _ordinal_value(core, language)
    if ordinal is not None and 0 < ordinal <= 31:
        return _ordinal(ordinal), None
    return "", None


_EDGE = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


def to_english(tokens: Sequence[str], language: str) -> list[str]:
    """The tokens as the English redaction rules should read them (one token per token)."""
    lang = (language or "en").lower()
    if lang not in _NUMBER:
        return list(tokens)
    parts = [_EDGE.match(t).groups() for t in tokens]  # type: ignore[union-attr]
    cores = [_fold(core) for _lead, core, _trail in parts]
    out: list[str | None] = []
    numeric: list[bool] = []
    for tok, core in zip(tokens, cores, strict=True):
        if is_tag(tok):
            out.append(None)  # an earlier pass's [TAG] stays a tag
            numeric.append(False)
            continue
        if any(c.isdigit() for c in core):
            out.append(None)  # digits read as they are
            numeric.append(True)
            continue
        word, value = _translate(core, lang)
        out.append(word or None)
        numeric.append(value is not None)
    changed = True
    while changed:  # "quatre un un un": each article next to a number is one, in turn
        changed = False
        for i, core in enumerate(cores):
            if numeric[i] or core not in _ONE_ARTICLES[lang]:
                continue
            if (i > 0 and numeric[i - 1]) or (i + 1 < len(cores) and numeric[i + 1]):
                out[i], numeric[i], changed = "one", True, True
    for i, core in enumerate(cores):
        if (
            core in _NUMBER_AND[lang]
            and 0 < i < len(cores) - 1
            and numeric[i - 1]
            and numeric[i + 1]
        ):
            out[i] = "uh"
    result = []
    for (lead, core, trail), new in zip(parts, out, strict=True):
        result.append(f"{lead}{new}{trail}" if new and core else lead + core + trail)
    return result


def english_text(text: str, language: str) -> str:
    """`text` with each whitespace token read as `to_english` reads it."""
    if (language or "en").lower() not in _NUMBER or not text:
        return text
    return " ".join(to_english(text.split(), language))
