"""What counts as a real interruption, and what the caller heard of a cut reply."""

import pytest

from serve_app.conversation.playback import Speech, heard, is_backchannel


@pytest.mark.parametrize(
    "text", ["", "Mm-hmm.", "Uh-huh", "MMOM, MMOM.", "Mm-m-m-m-m.", "(coughs)", "[Music]", "Hmm, uh.", "Oh."]
)
def test_fillers_and_noise_are_backchannels(text):
    assert is_backchannel(text)


@pytest.mark.parametrize(
    "text", ["Wait.", "No", "yes", "Stop, stop.", "one two", "Uh, where is my order?", "home", "Mom, wait"]
)
def test_words_take_the_turn(text):
    assert not is_backchannel(text)


def test_heard_keeps_whole_sentences_and_the_cut_part_of_the_next():
    sentences = ["One two three four.", "Five six seven eight nine ten.", "Eleven."]
    durations = [1.0, 2.0, 1.0]
    out, at = heard(sentences, durations, 2.0)  # half-way through the second
    assert out == ["One two three four.", "Five six seven…"] and at == 1


def test_heard_before_any_word_and_after_everything():
    sentences, durations = ["One two three four.", "Five six."], [1.0, 1.0]
    assert heard(sentences, durations, 0.1) == ([], 0)
    assert heard(sentences, durations, 5.0) == (sentences, 2)


def test_heard_a_sentence_not_yet_synthesized_was_not_heard():
    assert heard(["One two.", "Three four."], [1.0], 1.5) == (["One two."], 1)


def test_speech_adds_audio_per_sentence():
    s = Speech(turn_id=3, start_bytes=100)
    s.add_audio(0, 0.5)
    s.add_audio(0, 0.25)
    s.add_audio(2, 1.0)
    assert s.durations == [0.75, 0.0, 1.0]
