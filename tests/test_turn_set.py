"""The end-of-turn set (loadtests/turn_set.py) and the turn-taking benchmark's scoring
(benchmarks/turn_scoring.py): the set is big and varied enough to measure with, its pauses lie
where it says, and false cuts, late endpoints and barge-in clears are read right off timelines."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from benchmarks.turn_scoring import clear_ms, score_item, summarize, table
from common.audio import trailing_silence_s
from loadtests.turn_set import KINDS, items, noise_burst, rendered, subset
from tests.test_eval_split import find_leaks, leak_corpus

RATE = 16000


def test_the_set_has_a_hundred_items_of_three_kinds_in_several_voices_and_speeds():
    written = items()
    kinds = Counter(i.kind for i in written)
    assert len(written) >= 100 and set(kinds) == set(KINDS) and min(kinds.values()) >= 20, kinds
    for kind in KINDS:
        of = [i for i in written if i.kind == kind]
        assert len({i.voice for i in of}) >= 2 and len({i.length_scale for i in of}) >= 3, kind
    assert len({i.written for i in written}) == len(written), "an item said twice measures it twice"


def test_pauses_are_where_a_sentence_is_unfinished_and_300_to_1200_ms_long():
    for item in items():
        marks = item.written.count("|")
        if item.kind == "complete":
            assert marks == 0 and item.pause_s == 0, item.written
        else:
            assert marks >= 1 and 0.3 <= item.pause_s <= 1.2, item.written
            assert not item.written.split("|")[0].rstrip().endswith((".", "?", "!")), item.written
        if item.kind == "digits":
            assert item.setup in (None, "pin", "order") and marks + 1 >= 2, item.written
    assert {i.pause_s for i in items() if i.kind == "paused"} >= {0.3, 1.2}  # both ends of the range


def test_an_even_subset_keeps_every_kind():
    small = subset(items(), 12)
    assert len(small) == 12 and {i.kind for i in small} == set(KINDS)
    assert subset(items(), None) == items()


def test_no_sentence_of_the_set_is_in_platform_code_intent_examples_or_the_kb():
    said = [i.text for i in items() if i.kind != "digits"]  # a PIN is said the way the dev set says it
    leaks = find_leaks(said, leak_corpus(), min_words=4)
    assert not leaks, leaks


def test_rendered_items_are_silent_in_their_pauses_and_voiced_around_them(tmp_path):
    picked = [next(i for i in items() if i.kind == k and i.voice.startswith("espeak")) for k in KINDS]
    for item in rendered(picked, tmp_path):
        x = np.frombuffer(item.pcm, dtype=np.int16).astype(np.float32) / 32768
        assert len(item.pauses) == item.written.count("|"), item.written
        for start, end in item.pauses:
            assert end - start == pytest.approx(item.pause_s, abs=0.001)
            assert np.abs(x[int((start + 0.002) * RATE) : int((end - 0.002) * RATE)]).max() == 0.0  # spliced silence
            assert np.abs(x[int((start - 0.05) * RATE) : int(start * RATE)]).max() > 0.01  # speech just before
            assert np.abs(x[int(end * RATE) : int((end + 0.05) * RATE)]).max() > 0.01  # and just after
        assert item.last_voiced_s == pytest.approx(item.duration_s - trailing_silence_s(item.pcm))
        assert item.last_voiced_s > max((e for _, e in item.pauses), default=0.0)
    again = rendered(picked, tmp_path)  # from the cache: the same audio, the same pauses
    assert [(i.pcm, i.pauses) for i in again] == [(i.pcm, i.pauses) for i in rendered(picked, tmp_path)]


def test_a_noise_burst_is_loud_and_short():
    burst = np.frombuffer(noise_burst(0.3, seed=1), dtype=np.int16)
    assert len(burst) == int(0.7 * RATE) and np.abs(burst).max() > 5000


def ev(kind: str, at: float, **fields) -> dict:
    return {"type": kind, "_at": at, **fields}


def answered_at(endpoint: float, audio: float, **metrics) -> list[dict]:
    return [
        ev("user.state", endpoint - 0.4, state="silent"),
        ev("agent.state", endpoint, state="thinking"),
        ev("transcript", endpoint + 0.1, final=True, text="..."),
        ev("agent.state", audio, state="speaking"),
        ev("agent.state", audio + 2, state="listening"),
        ev("turn.metrics", audio + 2, endpoint_delay_ms=480.0, preempted="reply", **metrics),
    ]


def test_a_turn_closed_after_the_last_voiced_sample_is_no_cut_and_is_timed_from_it():
    row = score_item(answered_at(10.35, 10.6), [10.6, 10.62], last_voiced_at=10.0)
    assert not row["false_cut"] and row["turns"] == 1 and row["answered"]
    assert row["endpoint_ms"] == pytest.approx(350) and row["v2v_ms"] == pytest.approx(600)
    assert not row["late"] and row["turn_metrics"] == [{"endpoint_delay_ms": 480.0}]


def test_an_endpoint_over_500_ms_is_late():
    row = score_item(answered_at(10.52, 10.9), [10.9], last_voiced_at=10.0)
    assert row["late"] and not row["false_cut"]


def test_a_turn_closed_in_the_pause_is_a_false_cut_even_if_only_one_turn_came():
    # the caller paused at 9.0, the platform closed the turn at 9.5; the caller went on until 10.0
    row = score_item(answered_at(9.5, 9.9), [9.9], last_voiced_at=10.0)
    assert row["false_cut"] and row["cut_at_ms"] == pytest.approx(-500) and not row["late"]


def test_two_final_transcripts_for_one_utterance_are_a_false_cut():
    events = answered_at(10.2, 10.5) + [ev("transcript", 12.9, final=True, text="...")]
    assert score_item(events, [10.5], last_voiced_at=10.0)["false_cut"]


def test_partials_during_the_utterance_are_no_cut_and_an_unanswered_item_has_no_times():
    events = [ev("transcript", 9.0, final=False, text="i would like"), ev("agent.state", 11.0, state="listening")]
    row = score_item(events, [], last_voiced_at=10.0)
    assert not row["false_cut"] and not row["answered"] and row["v2v_ms"] is None and not row["late"]


def test_barge_in_clear_is_timed_from_the_first_voiced_sample_and_missing_when_not_cleared():
    events = [ev("audio.clear", 4.0), ev("agent.state", 5.0, state="listening"), ev("audio.clear", 20.0)]
    assert clear_ms(events, onset_at=20.0 - 0.45) == pytest.approx(450)
    assert clear_ms(events[:2], onset_at=4.5) is None  # a clear before the speech is not this one's


def test_summary_rates_and_percentiles_count_only_what_they_say():
    def row(kind, cut=False, late=False, v2v=400.0, endpoint=300.0, turn_end=None):
        metrics = [{"turn_end": turn_end}] if turn_end else []
        return {"kind": kind, "false_cut": cut, "late": late, "v2v_ms": v2v, "endpoint_ms": endpoint}, metrics

    rows = []
    for kind, cut, late, v2v, endpoint, turn_end in [
        ("complete", False, False, 400.0, 250.0, "complete"),
        ("complete", False, True, 900.0, 600.0, "unsure"),
        ("complete", True, False, 100.0, -300.0, "complete"),  # cut: no v2v, no late
        ("paused", True, False, 300.0, 100.0, "complete"),
        ("paused", False, False, 1500.0, 1200.0, "unfinished"),
        ("digits", False, False, 700.0, 600.0, None),
    ]:
        r, metrics = row(kind, cut, late, v2v, endpoint, turn_end)
        rows.append({**r, "answered": True, "turn_metrics": metrics})
    barges = [{"kind": "speech", "clear_ms": ms} for ms in (300.0, 500.0)] + [
        {"kind": "noise", "clear_ms": None},
        {"kind": "backchannel", "clear_ms": 700.0},
        {"kind": "speech", "clear_ms": None, "skipped": "agent listening"},  # the reply ended first: not counted
    ]
    s = summarize("adaptive", rows, barges)
    assert s["false_cut_rate"] == pytest.approx(2 / 6) and s["late_rate"] == pytest.approx(1 / 2)
    assert s["v2v_p50_ms"] == pytest.approx(650) and s["barge_in_clear_p50_ms"] == pytest.approx(400)
    assert s["noise_cleared"] == "1/2" and s["barge_ins"] == 2
    assert s["per_kind"]["paused"] == {"n": 2, "false_cut": 1, "late": 0, "unanswered": 0}
    assert s["turn_end"] == {"complete": 3, "unsure": 1, "unfinished": 1}
    fixed = summarize("fixed", [{**r, "turn_metrics": []} for r in rows], [])
    assert fixed["turn_end"] == {"absent": 6} and fixed["barge_in_clear_p50_ms"] is None
    printed = table([fixed, s])
    assert "adaptive" in printed and "33.3%" in printed and "absent" in printed
