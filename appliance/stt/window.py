"""Decode one VAD-cut utterance with Whisper on an encoder window fitted to its length.

Why not faster-whisper's `transcribe()`: it always pads the mel input to Whisper's 30 s window,
so a 3 s utterance pays for encoding 27 s of silence (0.36 s of a 0.45 s decode on this
machine). CTranslate2 (>= 4) accepts a shorter input, and the encoder's cost falls with it:
0.04 s for 10 s. The window is never shorter than `MIN_WINDOW_S`: on shorter windows greedy
decoding of short clips ("five five") loops ("5 5 5 5 5 5 5") because the decoder does not
see enough trailing silence to stop. Measured on the LibriVox and card clips of
`shared/data/speech` (`appliance bench stt`), 10 s keeps the WER of the 30 s window.

The rest follows faster-whisper's defaults for a single segment: timestamp tokens on (they end
the decode cleanly), blank and non-speech tokens suppressed, the no-speech gate
(no_speech_prob > 0.6 and mean log-probability < -1: silence or noise, no text), and word
timings from the cross-attention alignment.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from appliance.types import Word

__all__ = [
    "MIN_WINDOW_S",
    "MAX_WINDOW_S",
    "MAX_UTTERANCE_S",
    "window_seconds",
    "encoder_input",
    "decode_utterance",
]

SR = 16000
FRAMES_PER_SECOND = 100
#: Shortest encoder window: below it short clips loop under greedy decoding (see above).
MIN_WINDOW_S = 10
#: Whisper's native window; longer audio goes through faster-whisper's long-form path.
MAX_WINDOW_S = 30
#: Silence kept after the speech inside the window, so the decoder sees the utterance end.
_TAIL_S = 1.0
#: Longest utterance decoded here (it still gets its second of trailing silence).
MAX_UTTERANCE_S = MAX_WINDOW_S - _TAIL_S
_NO_SPEECH_PROB = 0.6
_LOG_PROB_FLOOR = -1.0
#: faster-whisper's max_initial_timestamp (1 s) in timestamp tokens of 20 ms.
_MAX_INITIAL_TIMESTAMP_INDEX = 50
# faster-whisper's defaults: punctuation the alignment splits off is folded back into words.
_PREPEND_PUNCTUATION = "\"'“¿([{-"
_APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


def window_seconds(duration: float) -> int:
    """Encoder window for `duration` seconds of speech: whole seconds, 10 to 30."""
    return int(min(MAX_WINDOW_S, max(MIN_WINDOW_S, math.ceil(duration + _TAIL_S))))


def encoder_input(feature_extractor: Any, audio: np.ndarray, win: int) -> Any:
    """CTranslate2 encoder input (log-mel, batch of one) of a `win`-second window that starts with
    16 kHz `audio` (at most `win` seconds) and is padded with silence.

    The padding is in the audio domain, so it is the log-mel of silence that Whisper was trained
    on, not the zero features faster-whisper pads its mel input with. Shared by the decoder here
    and the emotion model's speech embedding (`appliance.emotion.embedding`)."""
    import ctranslate2

    padded = np.zeros(win * SR, dtype=np.float32)
    padded[: audio.size] = audio
    n_frames = win * FRAMES_PER_SECOND
    mel = feature_extractor(padded, padding=0)[:, :n_frames]
    if mel.shape[1] < n_frames:
        mel = np.pad(mel, ((0, 0), (0, n_frames - mel.shape[1])))
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], np.float32))


def decode_utterance(
    model: Any,
    tokenizer: Any,
    audio: np.ndarray,
    *,
    beam_size: int,
    repetition_penalty: float,
    max_new_tokens: int,
    previous_tokens: list[int] | None = None,
) -> tuple[list[str], list[Word], bool]:
    """(texts, words, truncated) of 16 kHz mono float32 `audio` (at most `MAX_UTTERANCE_S`),
    unredacted.

    `truncated` is True when the decode ran into `max_new_tokens` before its end token: a
    loop ("4-1-1-1-...") that the caller should decode again another way.

    `model` is a `faster_whisper.WhisperModel` (its CTranslate2 model, feature extractor and
    alignment are reused); `tokenizer` a `faster_whisper.tokenizer.Tokenizer` for the language.
    `previous_tokens` (the previous utterance, tokenised) go before the start-of-transcript as
    Whisper's prompt, the way faster-whisper conditions on previous text.
    """
    from faster_whisper.transcribe import get_suppressed_tokens, merge_punctuations

    duration = audio.size / SR
    win = window_seconds(duration)
    if duration > win:
        raise ValueError(f"{duration:.1f} s of audio does not fit a {MAX_WINDOW_S} s window")
    n_frames = win * FRAMES_PER_SECOND
    encoded = model.model.encode(encoder_input(model.feature_extractor, audio, win), to_cpu=False)

    prompt = list(tokenizer.sot_sequence)
    if previous_tokens:
        prompt = [tokenizer.sot_prev, *previous_tokens, *prompt]
    result = model.model.generate(
        encoded,
        [prompt],
        beam_size=beam_size,
        repetition_penalty=repetition_penalty,
        max_length=len(prompt) + max_new_tokens,
        suppress_blank=True,
        # faster-whisper's default ("-1"): non-speech symbols plus the task/control tokens
        suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        max_initial_timestamp_index=_MAX_INITIAL_TIMESTAMP_INDEX,
        return_scores=True,
        return_no_speech_prob=True,
    )[0]
    tokens = list(result.sequences_ids[0])
    # Cut off by the token cap: as many tokens as the cap allows, the last one text. Ending on a
    # text token alone is no sign: after a prompt (the previous utterance) Whisper often ends a
    # finished decode without the closing timestamp, and reading that as a loop re-decoded 19 of
    # 21 utterances of the demo call on the long-form path (4x the CPU, the context discarded).
    truncated = len(tokens) >= max_new_tokens and tokens[-1] < tokenizer.eot
    text_tokens = [t for t in tokens if t < tokenizer.eot]
    if not text_tokens:
        return [], [], truncated
    # faster-whisper's average log-probability: the length-normalised score times the length.
    avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
    if result.no_speech_prob > _NO_SPEECH_PROB and avg_logprob < _LOG_PROB_FLOOR:
        return [], [], truncated
    text = tokenizer.decode(text_tokens).strip()
    content_frames = min(n_frames, math.ceil(duration * FRAMES_PER_SECOND))
    alignment = model.find_alignment(tokenizer, [text_tokens], encoded, content_frames)[0]
    merge_punctuations(alignment, _PREPEND_PUNCTUATION, _APPEND_PUNCTUATION)
    words = [
        Word(a["word"], float(a["start"]), float(a["end"]), float(a["probability"]))
        for a in alignment
        if a["word"]  # merge_punctuations empties the entries it folded into a neighbour
    ]
    return ([text] if text else []), words, truncated
