"""Text sentiment (VADER), key-phrase spotting and speaking rate."""

from __future__ import annotations

import pytest

from appliance.scoring.sentiment import (
    DEFAULT_KEY_PHRASES,
    key_phrases,
    text_sentiment,
    words_per_minute,
)
from appliance.types import Word


def test_sentiment_sign_and_range() -> None:
    neg = text_sentiment("I am not happy at all, this is terrible service")
    pos = text_sentiment("Thank you so much, that was really helpful")
    neu = text_sentiment("The invoice arrived on Tuesday")
    assert neg is not None and pos is not None and neu is not None
    assert -1.0 <= neg < -0.3
    assert 0.3 < pos <= 1.0
    assert abs(neu) < 0.3


@pytest.mark.parametrize("text", ["", "   ", "[CARD] [CVV]"])
def test_sentiment_none_without_words(text: str) -> None:
    assert text_sentiment(text) is None


def test_key_phrases_defaults() -> None:
    assert "cancel" in DEFAULT_KEY_PHRASES
    found = key_phrases("I want to CANCEL. Let me speak to a... manager! Any refunds?")
    assert found == ["cancel", "speak to a manager", "refund"]


def test_key_phrases_whole_words_and_custom_list() -> None:
    assert key_phrases("the refundable part") == []
    assert key_phrases("my subscription got cancelled") == ["cancel"]
    assert key_phrases("Your competitor offered less", ["competitor", "churn"]) == ["competitor"]
    assert key_phrases("", ["cancel"]) == []
    assert key_phrases("cancel cancel", ["cancel", "cancel"]) == ["cancel"]


def test_words_per_minute() -> None:
    words = [Word(f"w{i}", i * 0.5, i * 0.5 + 0.4) for i in range(10)]
    assert words_per_minute(words, 5.0) == pytest.approx(120.0)
    assert words_per_minute(30, 10.0) == pytest.approx(180.0)
    assert words_per_minute(words, 0.0) == 0.0
    assert words_per_minute([], 3.0) == 0.0
