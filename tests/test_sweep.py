"""The capacity sweep (loadtests/sweep.py): its arithmetic and report without Ray, then one short
real sweep against the platform."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from common.audio import leading_silence_s, trailing_silence_s
from loadtests import sweep_report as report
from loadtests.callers import CallResult, TurnResult, last_voiced_at, plan_turns, reply_first_audio
from loadtests.procstats import ProcSampler, Sample, component
from loadtests.utterances import PAUSE_S, TYPED_TURNS, load_utterances, splice

RATE = 16000


def tone(seconds: float) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16).tobytes()


def silence(seconds: float) -> bytes:
    return bytes(int(seconds * RATE) * 2)


@pytest.fixture(scope="module")
def utterance_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("utterances")


@pytest.fixture(scope="module")
def utterances(utterance_dir):
    return load_utterances(utterance_dir)


def test_voice_to_voice_starts_at_the_last_voiced_sample():
    pcm = silence(0.2) + tone(1.0) + silence(0.5)
    assert trailing_silence_s(pcm) == pytest.approx(0.5, abs=0.011)
    # sent from t=10 at real time: the last voiced sample left at 11.2, not when the clip ended (11.7)
    assert last_voiced_at(10.0, pcm) == pytest.approx(11.2, abs=0.011)


def test_the_reply_is_the_first_audio_of_a_newer_turn_after_the_speech():
    before = [{"type": "agent.text", "turn_id": 0, "_at": 1.0}]
    events = before + [
        {"type": "agent.text", "turn_id": 0, "_at": 11.3},  # the greeting's last sentence, still playing
        {"type": "transcript", "turn_id": 1, "final": True, "_at": 11.5},
        {"type": "agent.text", "turn_id": 1, "_at": 11.8},
    ]
    frames = [(11.0, 640), (11.35, 640), (11.82, 640), (11.84, 640)]
    first = reply_first_audio(events, frames, mark=1, since=11.2)
    assert first == 11.82 and (first - 11.2) * 1000 == pytest.approx(620)
    assert reply_first_audio(events[:3], frames, mark=1, since=11.2) is None  # no reply yet
    # a reply sentence that arrived before the caller had finished is not this turn's answer
    early = before + [{"type": "agent.text", "turn_id": 1, "_at": 11.0}]
    assert reply_first_audio(early, frames, mark=1, since=11.2) is None


def test_calls_mix_spoken_typed_and_barge_in_turns():
    plans = [plan_turns(i, 4) for i in range(4)]
    assert all(set(p) == {"voice", "typed", "barge"} for p in plans)
    assert len({tuple(p) for p in plans}) == 4  # calls do not move in lock step


def test_a_pause_is_spliced_between_the_voiced_parts():
    first, second = silence(0.1) + tone(0.5) + silence(0.3), silence(0.2) + tone(0.4) + silence(0.25)
    joined = splice([first, second], PAUSE_S)
    x = np.abs(np.frombuffer(joined, dtype=np.int16))
    quiet = np.flatnonzero(x[int(0.1 * RATE) : -int(0.25 * RATE)] < 10)
    runs = np.split(quiet, np.flatnonzero(np.diff(quiet) != 1) + 1)
    assert max(len(r) for r in runs) / RATE == pytest.approx(PAUSE_S, abs=0.02)
    assert leading_silence_s(joined) == pytest.approx(0.1, abs=0.011)
    assert trailing_silence_s(joined) == pytest.approx(0.25, abs=0.011)


def test_utterances_two_voices_three_speeds_some_paused(utterances):
    assert len({u.text for u in utterances}) >= 16 and len(TYPED_TURNS) >= 6
    assert {u.voice.split(":")[0] for u in utterances} == {"piper", "espeak-ng"}
    assert {u.length_scale for u in utterances} == {0.85, 1.0, 1.2}
    assert 0 < sum(u.paused for u in utterances) < len(utterances)
    for u in utterances:
        assert "|" not in u.text and 1.0 < len(u.pcm) / 2 / RATE < 6.0 and trailing_silence_s(u.pcm) < 0.6
    # the same speaker says a sentence slower at a larger length_scale
    piper = {u.length_scale: len(u.pcm) / len(u.text) for u in utterances if u.voice.startswith("piper")}
    assert piper[1.2] > piper[0.85]


def test_processes_grouped_by_component():
    cases = {
        ("ray::ServeReplica:voice:Gateway",): "Gateway",
        ("ray::ServeReplica:voice:ASR",): "ASR",
        ("ray::ServeReplica:voice:TTS",): "TTS",
        ("ray::ServeReplica:voice:Embeddings",): "Embeddings",
        ("ray::ServeReplica:voice:Dialogue",): "Dialogue",
        ("ray::SessionActor",): "SessionActor",
        ("ray::SessionActor.turn",): "SessionActor",
        ("ray::ProxyActor",): "HTTP proxy",
        ("ray::ServeController",): "Serve controller",
        ("ray::IDLE",): "Ray worker",
        ("/venv/bin/python", "/venv/lib/python3.11/site-packages/ray/_private/workers/default_worker.py"): "Ray worker",
        ("ray::tool_breakers",): "Ray other",
        ("/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet", "--node_id=x"): "Ray other",
        ("/venv/lib/python3.11/site-packages/ray/core/src/ray/gcs/gcs_server", "--port=1"): "Ray other",
        ("/usr/bin/python3", "-m", "pytest"): None,
        ("bash",): None,
    }
    for cmdline, expected in cases.items():
        assert component(list(cmdline)) == expected, cmdline
    assert component([], "gcs_server") == "Ray other"


def test_sampler_measures_its_own_process():
    sampler = ProcSampler(own_tree=True)
    sampler.start()
    sum(i * i for i in range(3_000_000))  # some CPU to see
    sample = sampler.sample()
    sampler.stop()
    assert sample.pss_mb["sweep"] > 10 and sample.cpu["sweep"] > 0  # (a platform this suite started is a child too)


def _call(i: int, v2v: list[float], typed: list[float], setup: float, failures=(), code=1000) -> CallResult:
    c = CallResult(f"c{i}", 0.0, setup_ms=setup, live_at=1.0 + i, close_code=code, failures=list(failures))
    c.turns = [TurnResult("voice", "q", ms, 10.0 + j) for j, ms in enumerate(v2v)]
    c.turns += [TurnResult("typed", "t", ms, 20.0) for ms in typed]
    return c


def test_level_summary_percentiles_failures_and_memory_slope():
    calls = [
        _call(0, [500, 700], [300], 200),
        _call(1, [600, None], [400], 400, ["no_reply"]),
        _call(2, [], [], None, ["http_503"], code=None),
        _call(3, [], [], None, [], code=1013),
    ]
    calls[2].refused = True
    calls[3].refused = True
    samples = [Sample(5.0, {"TTS": 40.0, "sweep": 10.0}, {"TTS": 300.0, "sweep": 80.0}), Sample(6.0, {"TTS": 20.0})]
    lv = report.summarize(4, calls, samples, samples[:1])
    assert (lv["turns"], lv["answered"]) == (6, 5)
    assert lv["v2v_p50_ms"] == 600 and lv["v2v_p95_ms"] == pytest.approx(690)
    assert lv["typed_p50_ms"] == 350 and lv["setup_p95_ms"] == pytest.approx(390)
    assert (lv["failures"], lv["failed_calls"], lv["drops"], lv["refusals"]) == (2, 2, 2, 2)
    assert lv["cpu_pct"] == {"TTS": 30.0, "sweep": 5.0} and lv["cpu_platform_pct"] == 30.0
    assert lv["pss_total_mb"] == 300.0  # the load generator's own memory left out
    assert report.full_window(calls[:2]) == (2.0, 20.0)  # after the last greeting, to the first last turn
    levels = [{**lv, "calls": n, "pss_total_mb": 2000 + 50 * n} for n in (1, 2, 4, 8)]
    assert report.per_call_mb(levels) == pytest.approx(50)
    text = report.table(levels)
    assert "v2v P50" in text and "TTS" in text and "memory per extra call (PSS slope): 50.0 MB" in text
    assert json.loads(json.dumps(report.plain({"x": math.nan, "y": [1.234567]}))) == {"x": None, "y": [1.23]}


def test_soak_windows_and_slopes_per_hour():
    calls = [_call(0, [], [], 100)]
    calls[0].turns = [TurnResult("voice", "q", 600 + m, 60 * m + 30) for m in range(10)]
    samples = [Sample(60 * m + 10, {}, {"TTS": 2000 + m}) for m in range(10)]
    windows = report.soak_windows(calls, samples, 0.0, 10)
    assert [w["turns"] for w in windows] == [1] * 10 and windows[3]["pss_total_mb"] == 2003
    slopes = report.soak_slopes(windows)
    assert slopes["pss_total_mb_per_hour"] == pytest.approx(60) and slopes["v2v_p50_ms_per_hour"] == pytest.approx(60)
    assert math.isnan(report.slope([1.0], [2.0]))
    assert "slope per hour" in report.soak_table(windows, slopes)
    assert report.soak_warmup(30) == 5 and report.soak_warmup(3) == 0  # the settled slopes skip the warm-up
    # More live calls move the total by their session actors; the shared part stays where it was.
    pss = [{"TTS": 2000.0, "SessionActor": 50.0 * m} for m in range(10)]
    busier = [Sample(60 * m + 10, {}, pss[m], {"SessionActor": m}) for m in range(10)]
    held = report.soak_windows(calls, busier, 0.0, 10)
    assert [w["session_actors"] for w in held] == list(range(10))
    assert held[4]["pss_by_component_mb"]["SessionActor"] == 200
    busy_slopes = report.soak_slopes(held)
    assert busy_slopes["pss_total_mb_per_hour"] == pytest.approx(3000) and busy_slopes["pss_shared_mb_per_hour"] == 0
    refused = _call(0, [], [], 100)
    refused.refused, refused.started = True, 125.0
    assert [w["refused"] for w in report.soak_windows([refused], samples, 0.0, 3)] == [0, 0, 1]


@pytest.mark.platform
def test_short_sweep_against_the_platform(platform, output_dir, utterance_dir, utterances):
    from loadtests.sweep import main

    out_json, out_png = output_dir / "sweep.json", output_dir / "sweep.png"
    args = ["--url", platform["ws"], "--procs", "tree", "--calls", "1,2", "--turns", "2", "--ramp-s", "0.5"]
    args += ["--utterances", str(utterance_dir)]  # rendered by the fixture already
    assert main([*args, "--json", str(out_json), "--png", str(out_png)]) == 0
    result = json.loads(out_json.read_text())
    levels = result["levels"]
    assert [lv["calls"] for lv in levels] == [1, 2]
    for lv in levels:
        assert lv["turns"] >= 2 * lv["calls"] and lv["answered"] == lv["turns"], lv
        assert lv["v2v_p50_ms"] > 0 and lv["typed_p50_ms"] > 0 and lv["setup_p50_ms"] > 0
        assert lv["drops"] == 0 and lv["refusals"] == 0, lv["failure_kinds"]
        assert {"Gateway", "ASR", "TTS"} <= set(lv["cpu_pct"]) and lv["pss_total_mb"] > 500
    assert out_png.stat().st_size > 10_000 and out_png.read_bytes()[:4] == b"\x89PNG"
