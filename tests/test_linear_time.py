"""Every regular expression that sees caller text runs in linear time (issue 11, finding 2).

One typed message of 28 digits and a letter used to hold a session actor for a minute: the PII
masker backtracked exponentially. Here every masker and parser that caller text reaches, listed
by name below, is fed random and adversarial strings up to 64 KiB; each call must finish within
150 ms of CPU time (CPU, not wall time; the slowest, the policy on 64 KiB of spaced digits, takes
about 40 ms, so a shared core's cache misses do not fail it, while any super-linear pattern takes
seconds there) and never raise, except a parser's documented error. A watchdog stops a call
after 2 s of CPU, so a regression fails quickly instead of hanging the run. `pytest -s` prints the worst masking time.
"""

from __future__ import annotations

import json
import logging
import signal
import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from common import dialects, pii
from common.logs import install_log_masking
from deployments.dialogue import returns
from deployments.dialogue import text as dialogue_text
from deployments.policy import consent, language, slots
from deployments.policy.engine import PolicyContext, PolicyEngine
from deployments.vad import turn_end
from models.protocol import ProtocolError, parse_client_text, parse_connect
from serve_app.conversation import partial_mask, playback

LIMIT_S = 0.150
WATCHDOG_S = 2.0
MAX_CHARS = 64 * 1024
_POLICY = PolicyEngine(3)
_CONTEXTS = (
    PolicyContext(authenticated=True, auth_locked=False, needs_auth=False, consecutive_failures=0),
    PolicyContext(authenticated=False, auth_locked=False, needs_auth=True, consecutive_failures=5),
)


def _log_masked(text: str) -> str:
    """What the log masking filter makes of a record carrying `text`."""
    record = logging.getLogRecordFactory()("caller", logging.INFO, __file__, 1, "caller said %s", (text,), None)
    return record.getMessage()


def _decide(text: str):
    return [_POLICY.decide(text, ctx) for ctx in _CONTEXTS]


def _client_text(text: str):
    try:
        return parse_client_text(json.dumps({"type": "text", "text": text}))
    except ProtocolError:
        return None  # over the size limits: refused with the documented error


# (name, function, the error it may raise by contract)
SUBJECTS = [
    ("pii.mask_pii", pii.mask_pii, ()),
    ("pii.mask_log_text", pii.mask_log_text, ()),
    ("pii log masking", _log_masked, ()),
    ("partial_mask.mask_number_runs", partial_mask.mask_number_runs, ()),
    ("slots.digit_runs", slots.digit_runs, ()),
    ("slots.extract_pin", slots.extract_pin, ()),
    ("slots.extract_order_number", slots.extract_order_number, ()),
    ("language.words", language.words, ()),
    ("language.is_question", language.is_question, ()),
    ("language.asks_about_account", language.asks_about_account, ()),
    ("language.confirmation", language.confirmation, ()),
    ("PolicyEngine.decide", _decide, ()),
    ("PolicyEngine.wants_human", _POLICY.wants_human, ()),
    ("PolicyEngine.is_injection", _POLICY.is_injection, ()),
    ("returns.reason_phrase", returns.reason_phrase, ()),
    ("consent.consent_after", lambda t: consent.consent_after("pending", t), ()),
    ("consent.carries_request", consent.carries_request, ()),
    ("text.split_sentences", dialogue_text.split_sentences, ()),
    ("text.normalize", dialogue_text.normalize, ()),
    ("playback.is_backchannel", playback.is_backchannel, ()),
    ("dialects.dialect_for", dialects.dialect_for, ()),
    ("turn_end.decide", turn_end.decide, ()),
    ("turn_end.decide awaiting a PIN", lambda t: turn_end.decide(t, "pin"), ()),
    ("protocol.parse_client_text raw", parse_client_text, (ProtocolError,)),
    ("protocol.parse_client_text text", _client_text, ()),
    ("protocol.parse_connect", lambda t: parse_connect({"caller_id": t, "locale": t}), (ProtocolError,)),
    ("protocol.parse_connect locale", lambda t: parse_connect({"caller_id": "c1", "locale": t}), (ProtocolError,)),
]


class _Runaway(Exception):
    pass


def _on_watchdog(signum, frame):
    raise _Runaway


def timed(fn, arg, allowed=()):
    """(CPU seconds, result) of one call; a call past the watchdog is stopped and counts as that long."""
    previous = signal.signal(signal.SIGVTALRM, _on_watchdog)  # CPU-time alarm: pytest-timeout uses SIGALRM
    signal.setitimer(signal.ITIMER_VIRTUAL, WATCHDOG_S)
    start = time.thread_time()
    try:
        result = fn(arg)
    except allowed as exc:
        result = exc
    except _Runaway:
        return WATCHDOG_S, None
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)
    return time.thread_time() - start, result


def cpu_time(fn, arg, allowed=()) -> float:
    return timed(fn, arg, allowed)[0]


def masked(text: str) -> str:
    took, result = timed(pii.mask_pii, text)
    assert took < WATCHDOG_S, f"mask_pii ran away on {text[:60]!r}"
    return result


def check(text: str) -> dict[str, float]:
    """Run every subject on `text`; fail on the first over the limit. Returns the times."""
    times = {}
    for name, fn, allowed in SUBJECTS:
        took = cpu_time(fn, text, allowed)
        if LIMIT_S < took < WATCHDOG_S:  # once more, for a scheduler hiccup: a linear call is fast again
            took = min(took, cpu_time(fn, text, allowed))
        assert took <= LIMIT_S, f"{name} took {took * 1000:.0f} ms on {len(text)} chars: {text[:60]!r}..."
        times[name] = took
    return times


def fill(unit: str, tail: str = "", size: int = MAX_CHARS) -> str:
    return (unit * (size // max(1, len(unit)) + 1))[: size - len(tail)] + tail


# The shapes that made the old patterns backtrack, and their neighbours: digit runs and digit
# words with separators, dotted chains, "x at y dot", spaces, unicode digits, a letter at the end.
ADVERSARIAL = {
    "40 digits + letter": "1" * 40 + "a",
    "digits + letter": fill("1", "a"),
    "digits spaced + letter": fill("1 ", "a"),
    "digit words": fill("one two oh ", "x"),
    "digit words glued": fill("onetwo", "x"),
    "digit then letter": fill("1a"),
    "digit, word": fill("1 a "),
    "punctuated digits": fill("1-2.3/4(5)6, ", "z"),
    "thousands then a short group": fill("1,111", ",11"),
    "unicode digits": fill("١٢٣ ", "a"),
    "a.a.a": fill("a."),
    "a.a.a then @": fill("a.", "@b"),
    "a-a-a": fill("a-"),
    "x at y dot": fill("x at y dot "),
    "dot dot dot": fill("dot ", "at b.com"),
    "x dot at": fill("x dot at "),
    "at at at": fill("at "),
    "emails": fill("a@b.com "),
    "a@a.a.": fill("a@a."),
    "x@ then dots": "x@" + fill("y."),
    "spaces + letter": fill(" ", "a"),
    "tabs and newlines": fill(" \t\n", "x"),
    "pin and spaces": fill("pin" + " " * 1000 + "1"),
    "pin 1,,,": "pin 1" + fill(",", "2"),
    "social + 9 digits": fill("social 123456789 x "),
    "ssn shapes": fill("123-45-6789 "),
    "brackets": fill("["),
    "parentheses": fill("("),
    "hum": fill("m", "x"),
    "ignore instructions": fill("ignore the previous ", "x"),
    "talk to": "talk to" + fill(" ", "x"),
    "human + spaces": "human" + fill(" ", "x"),
    "mixed punctuation": fill(".,;:!?-/()[]{}'\"@#", "1"),
    "json nesting": fill('{"a":['),
    "ſ and İ": fill("ſix İ "),
}


@pytest.fixture(autouse=True, scope="module")
def log_masking():
    """The log filter as processes install it; the factory is put back afterwards."""
    factory = logging.getLogRecordFactory()
    install_log_masking()
    yield
    logging.setLogRecordFactory(factory)


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_worst_inputs_take_under_150_ms(name):
    check(ADVERSARIAL[name])


def test_worst_masking_time_on_64_kib(capsys):
    """The figure the issue asks for: mask_pii's worst time over the adversarial 64 KiB inputs."""
    worst = max((min(cpu_time(pii.mask_pii, t) for _ in range(3)), name) for name, t in ADVERSARIAL.items())
    with capsys.disabled():
        print(f"\nworst mask_pii time on a 64 KiB input: {worst[0] * 1000:.1f} ms CPU ({worst[1]})")
    assert worst[0] <= LIMIT_S


def test_old_backtracking_shapes_are_masked_as_before():
    """The rewrite keeps what it masks: a 40-digit run is a card, glued to a word it is not."""
    assert masked("1" * 40 + " a") == "[CARD] a"
    assert masked("1" * 40 + "a") == "1" * 40 + "a"
    assert masked("call 415 555 0132 now, 1234567890123456a") == "call [PHONE] now, 1234567890123456a"
    assert masked("jane dot dot dot at example.com") == "jane [EMAIL]"  # a "dot" read the other way
    assert masked("ſix ſix ſix ſix ſix ſix ſix") == "[PHONE]"  # re.I reads "ſ" as "s": no KeyError


def test_caller_id_with_a_trailing_newline_is_refused():
    with pytest.raises(ProtocolError):
        parse_connect({"caller_id": "alice\n"})
    with pytest.raises(ProtocolError):
        parse_connect({"caller_id": "alice", "locale": "en-US\n"})


_FRAGMENTS = st.sampled_from(
    [
        "1",
        "12 ",
        "4111",
        "one ",
        "two oh ",
        "nine",
        "ſix",
        "١٢",
        "²",
        "a.",
        "a-",
        "x at y dot ",
        " ",
        "\t",
        "\n",
        "dot ",
        "at ",
        "@",
        ".",
        ",",
        "-",
        "/",
        "(",
        ")",
        "[",
        "*",
        "pin ",
        "is ",
        "social ",
        "security ",
        "ssn ",
        "com",
        "m",
        "mu",
        "yes ",
        "no ",
        "ignore ",
        "talk to ",
        "human ",
        '"',
        "{",
        "'",
        "é",
        "_",
    ]
)
_UNIT = st.lists(st.one_of(_FRAGMENTS, st.text(max_size=6)), min_size=1, max_size=8).map("".join)
_TAIL = st.one_of(st.sampled_from(["", "a", "x", "1", "_", "é", "?", "@b.com", " at b dot com"]), st.text(max_size=4))


# Shrinking would rerun slow calls hundreds of times; the failure message names the input shape.
_NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)


@st.composite
def long_texts(draw):
    """A unit repeated up to 64 KiB, then a tail: the shape that makes backtracking show."""
    unit, tail = draw(_UNIT), draw(_TAIL)
    return fill(unit, tail, draw(st.one_of(st.just(MAX_CHARS), st.integers(len(tail), MAX_CHARS))))


@settings(deadline=None, max_examples=25, suppress_health_check=list(HealthCheck), database=None, phases=_NO_SHRINK)
@given(long_texts())
def test_long_random_and_adversarial_texts(text):
    check(text)


@settings(deadline=None, max_examples=150, suppress_health_check=list(HealthCheck), database=None, phases=_NO_SHRINK)
@given(st.one_of(st.text(max_size=300), st.lists(_FRAGMENTS, max_size=60).map("".join)))
def test_short_random_texts(text):
    check(text)
