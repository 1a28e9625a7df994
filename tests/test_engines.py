"""The pure engines with the real offline models: Whisper, piper, MiniLM, the session store."""

import pytest

from deployments.dialogue.text import normalize, split_sentences
from tests.conftest import noise, silence


def word_error_rate(ref: str, hyp: str) -> float:
    r, h = normalize(ref).split(), normalize(hyp).split()
    d = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, d[0] = d[0], i
        for j, hw in enumerate(h, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (rw != hw))
    return d[len(h)] / max(1, len(r))


@pytest.fixture(scope="module")
def whisper():
    from deployments.asr.engine import WhisperEngine

    return WhisperEngine(cpu_threads=2)


@pytest.mark.parametrize("text", ["What are your opening hours?", "I want to check the status of my order."])
def test_whisper_transcribes_speech(whisper, speak, text):
    result = whisper.transcribe(silence(0.3) + speak(text) + silence(0.5))
    assert word_error_rate(text, result.text) <= 0.2, result.text
    assert 0.5 < result.confidence <= 1.0


def test_whisper_on_silence_and_noise_says_nothing(whisper):
    assert whisper.transcribe(silence(1.0)).text == ""
    assert whisper.transcribe(b"\x00\x00" * 100).text == ""  # too short to be speech
    assert len(whisper.transcribe(noise(1.5, amplitude=0.005)).text.split()) <= 2


def test_whisper_runs_on_cpu_here(whisper):
    assert (whisper.device, whisper.compute_type) == ("cpu", "int8")


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_piper_speaks_at_the_requested_rate(piper, rate):
    chunks = list(piper.synthesize("Hello there. How are you today?", rate))
    assert len(chunks) == 2  # one per sentence, so the first can play while the second is made
    seconds = sum(len(c) for c in chunks) / 2 / rate
    assert 1.0 < seconds < 5.0


def test_sentence_split():
    assert split_sentences("Hi. How are you? Fine!  ") == ["Hi.", "How are you?", "Fine!"]
    assert split_sentences("Version 2.5 is out. Yes.") == ["Version 2.5 is out.", "Yes."]


def test_embeddings_are_unit_vectors_and_similar_for_paraphrases():
    from deployments.embeddings.engine import Embedder

    a, b, c = Embedder().embed(["where is my order", "has my parcel shipped", "what a lovely day"])

    def dot(x, y):
        return sum(i * j for i, j in zip(x, y))

    assert abs(dot(a, a) - 1) < 1e-3 and len(a) == 384
    assert dot(a, b) > dot(a, c) + 0.2


def test_session_engine_checkpoints_every_turn_masked(tmp_path):
    from deployments.session.engine import SessionEngine
    from deployments.session.store import SessionStore
    from models.dialogue import TurnSummary
    from models.session import TurnFinish, TurnRecord
    from models.state import SessionStatus

    store = SessionStore(tmp_path / "s.db")
    engine = SessionEngine(store, max_turns=2)
    engine.start("sid", "caller-1", "en-US", "actor-x")
    said = "my card is 4111 1111 1111 1111, email me at a@b.com"
    summary = TurnSummary(intent="pin", memory={**engine.memory(), "slots": {"awaiting": "pin"}})
    recorded = engine.record_turn(
        TurnRecord(turn_id=0, source="speech", transcript=said, sentences=["Got it."], summary=summary)
    )
    assert recorded.transcript == "my card is [CARD], email me at [EMAIL]"
    assert recorded.context.awaiting == "pin" and recorded.context.next_turn_id == 1
    engine.finish_turn(TurnFinish(turn_id=0, metrics={"asr_ms": 12.0}))
    saved = store.load("sid")
    assert saved.turns[0].transcript == "my card is [CARD], email me at [EMAIL]"
    assert saved.turns[0].metrics == {"asr_ms": 12.0} and saved.actor_id == "actor-x"
    pin = engine.record_turn(TurnRecord(turn_id=1, source="speech", transcript="one two three four"))
    assert pin.transcript == "[PIN]"  # digits said when a PIN was asked for are a secret from the start
    assert engine.over_turn_limit  # two caller turns: the next one gets the goodbye
    stale = engine.record_turn(TurnRecord(turn_id=2, source="speech", transcript="hi", read_version=0))
    assert stale.stale and len(engine.state.turns) == 2  # run ahead on a session that changed since
    engine.close("hangup")
    final = SessionStore(tmp_path / "s.db").load("sid")  # a second process sees it
    assert final.status == SessionStatus.ENDED and final.end_reason == "hangup" and final.ended_at_ms
    assert [e.kind for e in final.events] == ["session.started", "session.ended"]


def test_after_a_barge_in_the_history_keeps_only_what_was_heard(tmp_path):
    from deployments.session.engine import SessionEngine
    from deployments.session.store import SessionStore
    from models.session import TurnFinish, TurnRecord

    engine = SessionEngine(SessionStore(tmp_path / "s.db"), max_turns=10)
    engine.start("sid", "caller-1", "en-US")
    engine.record_turn(TurnRecord(turn_id=0, source="speech", transcript="hours?", sentences=["Nine.", "To five."]))
    version = engine.version
    context = engine.finish_turn(TurnFinish(turn_id=0, interrupted=True, heard=["Nine."]))
    assert [e.agent for e in context.history] == ["Nine."] and context.version > version


@pytest.mark.parametrize(
    "text, masked",
    [
        ("call me on 415-555-0132", "call me on [PHONE]"),
        ("ssn 123-45-6789", "ssn [SSN]"),
        ("card 5500 0000 0000 0004 thanks", "card [CARD] thanks"),
        ("order 12345 please", "order 12345 please"),
        # what Whisper writes when these are spoken
        ("My card number is 4,111,111,111,111.", "My card number is [CARD]."),
        ("My card number is for 111, 111, 111, 111, 111, 111, 111.", "My card number is for [CARD]."),
        ("four one one one one one one one one one one one one one one one", "[CARD]"),
        ("My Social Security number is 123-45-6,789.", "My Social Security number is [SSN]."),
        ("Call me back on 450.055.0.134.", "Call me back on [PHONE]."),
        ("You can email me at jane.do at example.com", "You can email me at [EMAIL]"),
        ("it's jane dot doe at example dot com", "it's [EMAIL]"),
        # and what must stay readable
        ("order one zero zero four two", "order one zero zero four two"),
        ("it costs 1,299.99 dollars", "it costs 1,299.99 dollars"),
        ("no one at all, version 2.5", "no one at all, version 2.5"),
        ("session 123e4567-e89b-12d3-a456-426614174000", "session 123e4567-e89b-12d3-a456-426614174000"),
    ],
)
def test_pii_masking(text, masked):
    from common.pii import mask_pii

    assert mask_pii(text) == masked


@pytest.mark.parametrize(
    "a, b",
    [
        ("Where's my order?", "where is my order"),
        ("I'd like it, don't you?", "i would like it do not you"),
        ("Let's go", "let us go"),
    ],
)
def test_normalize_spells_out_contractions(a, b):
    assert normalize(a) == normalize(b) == b


@pytest.mark.parametrize(
    "text, masked",
    [
        ("my pin is 1234", "my [PIN]"),
        ("PIN: one two three four please", "[PIN] please"),
        ("the pin number is 9 8 7 6", "the [PIN]"),
        ("pinned to the wall", "pinned to the wall"),
    ],
)
def test_announced_pins_are_masked(text, masked):
    from common.pii import mask_pii

    assert mask_pii(text) == masked


def test_log_records_are_masked(caplog):
    import logging

    from common.logs import install_log_masking

    install_log_masking()
    install_log_masking()  # twice is harmless
    with caplog.at_level(logging.INFO):
        logging.getLogger("anything").info("caller said %s", "card 4111 1111 1111 1111 and a@b.com")
    assert caplog.records[-1].getMessage() == "caller said card [CARD] and [EMAIL]"


def test_tts_parts_keep_punctuation_and_a_long_first_sentence_starts_with_a_short_part():
    from deployments.tts.engine import clauses, quick_start

    hours = (
        "Our customer service team is available Monday to Friday from nine in the morning to six, "
        "and Saturday from ten to four."
    )
    assert clauses(hours) == [
        "Our customer service team is available Monday to Friday from nine in the morning to six,",
        "and Saturday from ten to four.",
    ]
    assert clauses("Hello, thanks for calling.") == ["Hello, thanks for calling."]  # parts under four words stay joined
    assert quick_start(hours)[0] == "Our customer service team"  # cut before the verb, not inside "Monday to Friday"
    assert " ".join(quick_start(hours)) == hours
    assert quick_start("We ship to Canada and the United Kingdom.") == ["We ship to Canada", "and the United Kingdom."]
    assert quick_start("Returns are free within thirty days.") == [
        "Returns are free within thirty days."
    ]  # six words: whole
    assert quick_start("Standard delivery takes three to five business days.") == [
        "Standard delivery takes three to five business days."
    ]  # not inside a range
    assert (
        quick_start("Every product comes with a one year warranty against manufacturing defects.")[0]
        == "Every product comes with a one year warranty"
    )
    assert (
        quick_start(
            "The warranty does not cover normal wear and tear, accidental damage, or items that were modified."
        )[0]
        == "The warranty does not cover normal wear and tear,"
    )  # no two-word tail
