"""Piper's bounded session: same audio, and a long sentence's memory given back."""

from __future__ import annotations

import numpy as np
import psutil
import pytest

from deployments.tts.engine import PiperEngine
from deployments.tts.piper_session import SHRINK_ABOVE, ShrinkingSession

SHORT = "Your parcel should arrive soon,"
LONG = " ".join(["any unused item may be sent back for a full refund with its receipt"] * 6) + "."


def _uss_mb() -> float:
    return psutil.Process().memory_full_info().uss / 2**20


class _RecordingSession:
    def __init__(self):
        self.options = []
        self.providers = ["CPUExecutionProvider"]

    def run(self, output_names, input_feed, run_options=None):
        self.options.append(run_options)
        return [np.zeros(4, dtype=np.float32)]


def test_only_a_long_input_has_the_arena_given_back_after_its_run():
    inner = _RecordingSession()
    session = ShrinkingSession(inner)
    session.run(None, {"input": np.zeros((1, SHRINK_ABOVE), dtype=np.int64)})
    session.run(None, {"input": np.zeros((1, SHRINK_ABOVE + 1), dtype=np.int64)})
    assert inner.options[0] is None
    assert inner.options[1] is not None and inner.options[1] is session._shrink
    assert session.providers == ["CPUExecutionProvider"]  # the rest is the wrapped session's


@pytest.fixture(scope="module")
def engines(piper):
    """The suite's voice (bounded: the default) and one with onnxruntime's defaults."""
    return piper, PiperEngine(bounded_memory=False)


def test_bounded_and_default_sessions_say_exactly_the_same_audio(engines):
    bounded, default = engines
    for text in (SHORT, LONG):
        a = b"".join(bounded.synthesize(text, 16000, deterministic=True))
        b = b"".join(default.synthesize(text, 16000, deterministic=True))
        assert a == b and len(a) > 16000


def test_a_long_sentence_leaves_the_bounded_voice_no_bigger_while_the_default_keeps_its_peak(engines):
    growth = {}
    for name, engine in zip(("bounded", "default"), engines, strict=True):
        for _ in range(3):  # warm: the short clauses a reply starts with
            list(engine.synthesize(SHORT, 16000))
        before = _uss_mb()
        list(engine.synthesize(LONG, 16000))
        growth[name] = _uss_mb() - before
    assert growth["default"] > 50, growth  # the measurement sees an arena that keeps its peak
    assert growth["bounded"] < 25, growth
