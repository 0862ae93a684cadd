"""Redaction with the call's context, and pause/resume of transcription.

One utterance is too little to judge card data by. The VAD closes an utterance after 0.5 s of
silence, so a customer reading "four five three nine ... one four eight eight ..." produces one
utterance per group, and each group alone is four harmless digits; "seven three seven" is only a
security code because the agent just asked for "the three digits on the back". A
`CallRedaction` sees every transcribed utterance of both speakers of one call, in call order,
and decides with that context. It is pure (no threads, no I/O, no clock): the writer thread owns
one per call and feeds it.

What it does:

- **Arming.** An utterance that asks for or announces sensitive data (card number, expiry,
  security code / "digits on the back", date of birth, social security, account number, IBAN,
  PIN; `cue_kinds`) arms the call for `arm_s` seconds of call time: the customer's next digit
  sequence is judged as that answer, however short ("737", "oh eight twenty nine", "twelfth of
  march"). A sensitive answer re-arms for its follow-ups (after a card: expiry and CVV).
- **Holding.** A customer utterance that carries digits (digits, number words, or a tag the
  per-utterance redaction already put there; while a date is expected, month names and
  ordinals too) opens or joins the *digit sequence* and is held, and every later utterance waits
  behind it. The agent's utterances with digits join an open sequence (read-backs are judged
  with what they repeat); an agent utterance asking for something else closes it.
  Fillers-only utterances ("okay", "uh", "and then") never close a sequence. The sequence
  closes on a customer utterance with other words, when `hold_timeout_s` of call time pass
  without a new digit utterance (`expire`), or at the call's end (`close`).
- **Judging.** A closed sequence is judged as a whole: the customer's digits joined over all its
  utterances (length, Luhn, brand IIN ranges, expiry and CVV shapes) and the armed kind. It is
  sensitive when armed, when it carries a tag, when a number read across utterances reaches 6
  digits (the invariant of `appliance.stt.redact`, across rows: utterances chain while one ends
  with a number and the next starts with one, give or take 6 words; numbers mid-sentence do
  not chain, so "order 4521" / "it came on the 5th" stay readable), or when it repeats 4 digits in a row
  of an earlier sensitive sequence of this call (kept only as salted hashes of 4-digit windows,
  so the context never holds a card number after judging it). Every utterance of a sensitive
  sequence is re-redacted with `redact(text, expect=TAG)` and `redact_words(words,
  expect=TAG)`, so text and word timings lose the same tokens. Agent digits outside a sequence
  are judged alone: redacted while armed (3+ digits) or when they repeat an earlier answer.
- **Pause.** `pause()`/`resume()` (a `cmd/call` command) and an automatic pause when the agent
  asks for payment data (`auto_pause_kinds`), resumed when the answer's sequence closes (or
  `arm_s` after the prompt if none came). Every utterance that overlaps a paused interval, of
  either speaker, is released with `Transcript(text="", words=(), ...)` and `paused=True`.

How a writer must use it (one `CallRedaction` per call, only ever from the writer thread):

1. For each utterance, once its stages are done, call `add(index, speaker, start, end,
   transcript)` in utterance index order (the order the VAD closed them; gaps from dropped
   utterances are fine). Both speakers go through the same context: a prompt must be added
   before its answer for the automatic pause to cover the answer (arming itself is judged by
   call time, so a late prompt still arms). Hold the *whole* utterance row (scores, transcript
   row, key phrases and text sentiment, outbox messages, live display) until it is released.
2. Write what `add`, `expire` and `close` return, in the order returned: the order of `add`,
   held utterances sorted by index, nothing overtaking a held one. Use `Released.transcript`
   (never the transcript given to `add`) for the transcript row and for everything derived
   from text (word count, speaking rate, text sentiment, key phrases); store `Released.paused`
   with it (a paused row has `text=""`, `words=()`; its emotion and timing scores are stored).
3. Call `expire(watermark)` while utterances are held, where `watermark` is call time up to
   which no utterance can still arrive that starts earlier: the audio position, or the start
   of the earliest utterance still being cut (VAD open) or transcribed, whichever is smaller.
4. Call `close()` at the end of the call and write what it returns before the call summary.
5. `pause(at)`/`resume(at)` from the `cmd/call` handler, with `at` the call's audio position
   when the command arrived; hand the command to the writer thread (the context is not
   thread-safe). `state()` says what the panel should show (paused, why, held, armed).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field, replace

from appliance.config import RedactionConfig
from appliance.stt.call_cues import PAYMENT_KINDS, asks, classify, cue_kinds, number_groups
from appliance.stt.redact import redact, redact_words
from appliance.stt.redact_lang import english_text, to_english
from appliance.stt.redact_numbers import JOINERS, find_runs, is_date_token, is_tag, norm
from appliance.types import Speaker, Transcript

__all__ = [
    "CallRedaction",
    "Released",
    "CallContextState",
    "cue_kinds",
    "asks",
    "PAYMENT_KINDS",
]

_DIGIT_TAGS = frozenset(
    {"CARD", "CVV", "EXPIRY", "DOB", "ID", "IBAN", "ACCOUNT", "PIN", "PHONE", "NUMBER"}
)
_DATE_KINDS = frozenset({"DOB", "EXPIRY"})
_EVENTS_KEPT = 64


@dataclass(frozen=True)
class Released:
    """An utterance the writer may now store, with its final transcript."""

    index: int
    speaker: Speaker
    start: float
    end: float
    transcript: Transcript | None
    """Final text and words (None when the utterance had no transcript)."""
    paused: bool = False
    """Transcription was paused: the transcript is empty and the row should say so."""
    redacted: tuple[str, ...] = ()
    """Tags the call context applied on top of the per-utterance redaction."""


@dataclass(frozen=True)
class CallContextState:
    """What the panel shows about a call's redaction."""

    paused: bool
    pause_reason: str | None
    """"command" or "payment" (automatic), None when not paused."""
    held: int
    """Utterances waiting for their digit sequence to close."""
    armed: tuple[str, ...]
    """Kinds of answer expected now (e.g. ("CARD",))."""

    def as_dict(self) -> dict:
        return {
            "paused": self.paused,
            "pause_reason": self.pause_reason,
            "held": self.held,
            "armed": list(self.armed),
        }


@dataclass
class _Item:
    index: int
    speaker: Speaker
    start: float
    end: float
    transcript: Transcript | None
    digits: str = ""
    tags: frozenset[str] = frozenset()
    """Digit-kind tags the per-utterance redaction already put in the text."""
    datey: bool = False
    runs: tuple[int, ...] = ()
    """Digits of each number of the utterance, numbers at most `_JOIN_WORDS` words apart taken
    as one ("the next four are 453" reads as a continuation, not as two numbers)."""
    lead: bool = False
    """A number (or tag) starts the utterance, give or take a few words ("it's 1488 ...")."""
    tail: bool = False
    """A number (or tag) ends it ("... the first four are 4539")."""
    content: str = "empty"  # "digits" | "filler" | "words" | "empty"
    tag: str | None = None
    in_open_seq: bool = False


@dataclass
class _Event:
    """A moment that arms the call: a prompt, a customer's own cue, a sensitive answer."""

    start: float
    until: float
    """Call time after which it arms no more."""
    kinds: frozenset[str]


@dataclass
class _Pause:
    start: float
    end: float | None
    reason: str  # "command" | "payment"


@dataclass
class _Sequence:
    items: list[_Item] = field(default_factory=list)
    first_start: float = 0.0
    last_end: float = 0.0


class CallRedaction:
    """The redaction context of one call; see the module docstring for how a writer uses it."""

    def __init__(self, settings: RedactionConfig | None = None, language: str = "en"):
        self.settings = settings or RedactionConfig()
        self.language = language
        """The call's language: its number words and cues are read as English (`redact_lang`)."""
        self._pause_kinds = frozenset(k.upper() for k in self.settings.auto_pause_kinds)
        self._queue: list[_Item] = []
        self._seq: _Sequence | None = None
        self._events: list[_Event] = []
        self._pauses: list[_Pause] = []
        self._salt = secrets.token_bytes(16)
        self._grams: dict[bytes, str] = {}
        """Salted hashes of every 4-digit window of this call's sensitive answers -> tag."""
        self._now = 0.0

    # -- public API ----------------------------------------------------------------------

    def add(
        self,
        index: int,
        speaker: Speaker,
        start: float,
        end: float,
        transcript: Transcript | None,
    ) -> list[Released]:
        """Take one transcribed utterance; return the utterances that can be stored now."""
        item = self._analyse(_Item(index, speaker, start, end, transcript))
        self._now = max(self._now, end)
        text = english_text(transcript.text, self.language) if transcript else ""
        kinds = cue_kinds(text) if text else frozenset()
        content = item.content == "digits" or (speaker == "customer" and self._date_answer(item))
        seq = self._seq
        if speaker == "customer" and seq is not None:
            late = start - seq.last_end >= self.settings.hold_timeout_s
            if late or (item.content == "words" and not content):
                self._close_sequence()
        elif seq is not None and kinds and start >= seq.last_end:
            self._close_sequence()  # the agent asks the next question: that answer is complete
        if kinds:
            self._arm(_Event(start, end + self.settings.arm_s, kinds))
            if speaker == "agent" and self._auto_pause_for(kinds, text):
                self._pauses.append(_Pause(end, None, "payment"))
        if content:
            if self._seq is None and speaker == "customer":
                self._seq = _Sequence(first_start=start)
            if self._seq is not None:
                self._seq.items.append(item)
                self._seq.last_end = max(self._seq.last_end, end)
                item.in_open_seq = True
            else:
                self._judge_alone(item)  # agent digits with no customer sequence open
        self._insert(item)
        return self._release()

    def expire(self, now: float) -> list[Released]:
        """Advance call time to `now` (a watermark, see the module docstring)."""
        self._now = max(self._now, now)
        seq = self._seq
        if seq is not None and now - seq.last_end >= self.settings.hold_timeout_s:
            self._close_sequence()
        for p in self._pauses:
            # an automatic pause whose answer never came ends `arm_s` after the prompt
            unanswered = p.reason == "payment" and p.end is None and self._seq is None
            if unanswered and now - p.start >= self.settings.arm_s:
                p.end = p.start + self.settings.arm_s
        return self._release()

    def close(self) -> list[Released]:
        """End of call: judge what is open, end every pause, release everything."""
        if self._seq is not None:
            self._close_sequence()
        for p in self._pauses:
            if p.end is None:
                p.end = float("inf")
        out = self._release()
        self._grams.clear()
        self._events.clear()
        return out

    def pause(self, at: float, reason: str = "command") -> None:
        """Stop storing transcript text of both speakers from call time `at` on."""
        if not any(p.end is None and p.reason == reason for p in self._pauses):
            self._pauses.append(_Pause(at, None, reason))

    def resume(self, at: float) -> None:
        """End every open pause (commanded or automatic) at call time `at`."""
        for p in self._pauses:
            if p.end is None:
                p.end = max(at, p.start)

    @property
    def paused(self) -> bool:
        return any(p.end is None for p in self._pauses)

    def holding(self, index: int) -> bool:
        """True while utterance `index` was given to `add` and is not released yet."""
        return any(it.index == index for it in self._queue)

    def state(self) -> CallContextState:
        open_ = [p for p in self._pauses if p.end is None]
        return CallContextState(
            paused=bool(open_),
            pause_reason=open_[-1].reason if open_ else None,
            held=len(self._queue),
            armed=tuple(sorted(self._armed_at(self._now))),
        )

    # -- analysis ------------------------------------------------------------------------

    def _analyse(self, item: _Item) -> _Item:
        tr = item.transcript
        tokens = to_english(tr.text.split(), self.language) if tr and tr.text else []
        nt = [norm(t) for t in tokens]
        runs = find_runs(nt)
        item.digits = "".join(r.digits for r in runs)
        item.runs, item.lead, item.tail = number_groups(tokens, nt, runs)
        tags = {norm(t)[1:-1].upper() for t in tokens if is_tag(t)}
        item.tags = frozenset(tags & _DIGIT_TAGS)
        item.datey = any(is_date_token(t) for t in nt)
        if item.digits or item.tags:
            item.content = "digits"
        elif not tokens:
            item.content = "empty"
        elif all(t in JOINERS or not t or is_tag(t) for t in nt):
            item.content = "filler"
        else:
            item.content = "words"
        return item

    def _date_answer(self, item: _Item) -> bool:
        """Month names and ordinals are part of the answer while a date is expected."""
        return item.datey and bool(self._armed_at(item.start) & _DATE_KINDS)

    def _arm(self, event: _Event) -> None:
        self._events.append(event)
        del self._events[:-_EVENTS_KEPT]  # a long call keeps only its recent prompts

    def _latest(self, t: float) -> _Event | None:
        best: _Event | None = None
        for e in self._events:
            if e.start <= t and (best is None or e.start >= best.start):
                best = e
        return best

    def _armed_at(self, t: float) -> frozenset[str]:
        """Kinds of the latest arming event at call time t (none once it has run out).

        The latest event wins even when it has run out: a new question replaces the last."""
        best = self._latest(t)
        return best.kinds if best and t <= best.until else frozenset()

    def _armed_until(self, t: float) -> float:
        best = self._latest(t)
        return best.until if best and t <= best.until else t

    def _auto_pause_for(self, kinds: frozenset[str], text: str) -> bool:
        s = self.settings
        wants = kinds & self._pause_kinds
        already = any(p.end is None and p.reason == "payment" for p in self._pauses)
        return s.auto_pause and bool(wants) and asks(text) and not already

    # -- judging -------------------------------------------------------------------------

    def _grams_of(self, digits: str) -> set[bytes]:
        return {
            hashlib.blake2b(digits[i : i + 4].encode(), key=self._salt, digest_size=16).digest()
            for i in range(len(digits) - 3)
        }

    def _close_sequence(self) -> None:
        seq = self._seq
        assert seq is not None
        self._seq = None
        kinds = self._armed_at(seq.first_start)
        cust = [it for it in seq.items if it.speaker == "customer"]
        agent = [it for it in seq.items if it.speaker == "agent"]
        digits = "".join(it.digits for it in cust)
        sensitive = (
            bool(kinds)
            or any(it.tags for it in cust)
            or _longest_chain(cust) >= 6
            or bool(self._grams_of(digits) & self._grams.keys())
        )
        for it in seq.items:
            it.in_open_seq = False
        if not sensitive:
            for it in agent:
                self._judge_alone(it)
            return
        tags = classify(digits, [len(it.digits) for it in cust], kinds)
        for it, tag in zip(cust, tags, strict=True):
            it.tag = tag
        for it in agent:
            if len(it.digits) >= 3 or it.tags or self._grams_of(it.digits) & self._grams.keys():
                it.tag = tags[-1] if tags else "NUMBER"
        offset = 0
        for it, tag in zip(cust, tags, strict=True):
            for g in self._grams_of(digits[max(0, offset - 3) : offset + len(it.digits)]):
                self._grams.setdefault(g, tag)
            offset += len(it.digits)
        follow = set(kinds) | set(tags) | {t for it in cust for t in it.tags}
        if "CARD" in follow:
            follow |= {"CVV", "EXPIRY"}
        # an answer never shortens the prompt's window (the rest of a number may come after a
        # long pause); it extends it by `follow_s` for what follows the answer
        until = max(seq.last_end + self.settings.follow_s, self._armed_until(seq.first_start))
        self._arm(_Event(seq.last_end, until, frozenset(follow)))
        if kinds & self._pause_kinds:
            # the payment answer closed: the automatic pause its prompt opened ends with it
            for p in self._pauses:
                if p.reason == "payment" and p.end is None and seq.last_end > p.start:
                    p.end = seq.last_end

    def _judge_alone(self, item: _Item) -> None:
        """Digits outside a customer sequence (mostly the agent's): redact when they repeat an
        earlier sensitive answer or the call is armed (a read-back of "seven three seven")."""
        kinds = self._armed_at(item.start)
        repeats = [self._grams[g] for g in self._grams_of(item.digits) if g in self._grams]
        if repeats:
            item.tag = repeats[0]
        elif kinds and len(item.digits) >= 3:
            item.tag = classify(item.digits, [len(item.digits)], kinds)[0]

    # -- release -------------------------------------------------------------------------

    def _insert(self, item: _Item) -> None:
        i = len(self._queue)
        while i > 0 and self._queue[i - 1].index > item.index:
            i -= 1
        self._queue.insert(i, item)

    def _release(self) -> list[Released]:
        out: list[Released] = []
        while self._queue and not self._queue[0].in_open_seq:
            out.append(self._final(self._queue.pop(0)))
        return out

    def _in_pause(self, item: _Item) -> bool:
        for p in self._pauses:
            if item.end > p.start and (p.end is None or item.start < p.end):
                return True
        return False

    def _final(self, item: _Item) -> Released:
        tr = item.transcript
        if self._in_pause(item):
            blank = replace(tr, text="", words=()) if tr is not None else None
            return Released(item.index, item.speaker, item.start, item.end, blank, True)
        if tr is None or item.tag is None:
            return Released(item.index, item.speaker, item.start, item.end, tr)
        text = redact(tr.text, expect=item.tag, language=self.language).text
        words = redact_words(tr.words, expect=item.tag, language=self.language)
        final = replace(tr, text=text, words=words)
        return Released(item.index, item.speaker, item.start, item.end, final, False, (item.tag,))


def _longest_chain(items: list[_Item]) -> int:
    """Most digits read as one number across utterances: a chain goes on while one utterance
    ends with a number and the next starts with one (the six-digit invariant, across rows)."""
    best = run = 0
    prev: _Item | None = None
    for it in items:
        if not it.runs:
            prev, run = it, 0
            continue
        first = it.runs[0]
        run = run + first if prev is not None and prev.tail and it.lead else first
        best = max(best, run)
        if len(it.runs) > 1:  # numbers apart in one sentence do not join: start from the last
            run = it.runs[-1]
        prev = it
    return best
