"""Piper's onnxruntime session, built so a TTS replica's memory stays bounded.

With onnxruntime's defaults a replica only ever grows: the CPU arena keeps every buffer it
took, so the longest sentence said so far sets its size for good (an 80-word sentence adds
about 95 MB), and the memory pattern planner keeps an allocation plan per input length.
Bounded, the pattern planner is off and the arena is given back after a run whose input is
longer than `SHRINK_ABOVE` phoneme ids: the short clauses a reply starts with keep a warm
arena (their first audio is what the caller waits for), and a long sentence's peak is
returned at once. `benchmarks/tts_memory.py` measures both ways.
"""

from __future__ import annotations

import json
from pathlib import Path

# Phoneme ids (piper's model input) above which the arena is shrunk after the run: about
# 25 words, longer than the clauses `quick_start` and `clauses` hand piper first.
SHRINK_ABOVE = 160


class ShrinkingSession:
    """An InferenceSession whose `run` gives back the arena after a long input.

    Piper calls only `run(None, feeds)`; everything else is the wrapped session's."""

    def __init__(self, session, shrink_above: int = SHRINK_ABOVE):
        import onnxruntime

        self._session = session
        self._shrink_above = shrink_above
        self._shrink = onnxruntime.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, output_names, input_feed, run_options=None):
        ids = input_feed.get("input")
        if run_options is None and ids is not None and ids.shape[-1] > self._shrink_above:
            run_options = self._shrink
        return self._session.run(output_names, input_feed, run_options)

    def __getattr__(self, name):
        return getattr(self._session, name)


def load_voice(model: Path, config: Path, bounded: bool = True):
    """A PiperVoice on the CPU; `bounded` as the module says, else onnxruntime's defaults."""
    import onnxruntime
    from piper import PiperVoice
    from piper.voice import PiperConfig

    with open(config, encoding="utf-8") as f:
        piper_config = PiperConfig.from_dict(json.load(f))
    options = onnxruntime.SessionOptions()
    if bounded:
        options.enable_mem_pattern = False
    session = onnxruntime.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(config=piper_config, session=ShrinkingSession(session) if bounded else session)
