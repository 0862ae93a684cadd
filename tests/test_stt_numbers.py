"""Numbers in one form before redaction: Whisper's "4-5-3-9" and "1.4888." become the digits
the caller said; amounts, decimals, phone numbers and dates keep theirs; redaction is the same
either way."""

from __future__ import annotations

import pytest

from appliance.stt.base import _finalise
from appliance.stt.redact import redact
from appliance.stt.redact_numbers import tidy_digits
from appliance.types import Word


@pytest.mark.parametrize(
    ("raw", "tidy"),
    [
        ("4-5-3-9", "4539"),
        ("the code is 7-3-7.", "the code is 737."),
        ("then 1.4888. and", "then 14888. and"),
        ("4-1-1-1 1-1-1-1", "4111 1111"),
        ("it was 1.5 liters", "it was 1.5 liters"),
        ("$1,250.50", "$1,250.50"),
        ("3.14159", "3.14159"),
        ("1.000 people", "1.000 people"),
        ("call 555-123-4567", "call 555-123-4567"),
        ("on 12-03-2024", "on 12-03-2024"),
        ("pages 2-3", "pages 2-3"),
        ("a-1-2-3", "a-1-2-3"),
    ],
)
def test_tidy_digits(raw: str, tidy: str) -> None:
    assert tidy_digits(raw) == tidy


@pytest.mark.parametrize(
    "raw",
    ["my card is 4-5-3-9, 1.4888. 2-3-4-5 6-7-8-9", "the code is 7-3-7", "order 4-5-2-1 please"],
)
def test_redaction_is_the_same_on_either_form(raw: str) -> None:
    def tags(text: str) -> list[str]:
        return sorted(t for t in redact(text).text.split() if t.startswith("["))

    assert tags(tidy_digits(raw)) == tags(raw)


def test_finalise_stores_the_tidy_form() -> None:
    words = [Word("Order", 0.0, 0.3), Word("4-5-2-1", 0.3, 1.0)]
    tr = _finalise("Order 4-5-2-1.", words, "whisper", 1.0)
    assert tr.text == "Order 4521."
