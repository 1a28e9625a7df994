"""The TTS cache of fixed lines: its bound, its key, its switch, and which lines it may keep."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from common.config import ConfigError, load_settings
from deployments.dialogue.engine import GREETING
from deployments.dialogue.fixed_lines import PREWARM, fixed_lines, knowledge_lines
from deployments.dialogue.support import HANDOFF, PIN_PROMPT, VERIFY_FIRST
from deployments.tts.cache import LineCache, LineKey
from deployments.tts.engine import quick_start

ROOT = Path(__file__).resolve().parent.parent
KB = ROOT / "docs" / "kb"


def key(text: str = "Hello.", voice: str = "joe", rate: int = 16000, length_scale: float = 1.0) -> LineKey:
    return LineKey(voice, (text,), rate, length_scale)


def test_lines_over_the_byte_bound_go_least_recently_used_first():
    cache = LineCache(max_bytes=250)
    a, b, c = key("a"), key("b"), key("c")
    assert cache.put(a, [b"x" * 60, b"x" * 40]) and cache.put(b, [b"y" * 100])
    assert cache.get(a) == (b"x" * 60, b"x" * 40)  # chunks kept as made; a is now the most recent
    assert cache.put(c, [b"z" * 100])  # 300 bytes: b, the least recently used, goes
    assert a in cache and c in cache and b not in cache
    assert cache.bytes_held == 200 <= cache.max_bytes
    assert not cache.put(key("huge"), [b"h" * 251]) and cache.bytes_held == 200  # larger than the whole budget
    assert cache.put(a, [b"x" * 10]) and cache.bytes_held == 110  # replaced, counted once
    assert cache.stats() == {"hits": 1, "misses": 0, "bytes": 110, "lines": 2, "max_bytes": 250}


def test_the_key_holds_voice_rate_and_speaking_rate():
    cache = LineCache(max_bytes=10_000)
    cache.put(key(), [b"pcm"])
    assert cache.get(key()) == (b"pcm",)
    for other in (key(voice="amy"), key(rate=48000), key(length_scale=1.2), key("Hello!")):
        assert cache.get(other) is None
    assert (cache.hits, cache.misses) == (1, 4)


def test_zero_megabytes_turns_it_off():
    cache = LineCache(max_bytes=0, fixed_lines=GREETING)
    assert not cache.enabled and not cache.cacheable(GREETING[0])
    assert cache.is_fixed(GREETING[0])  # still a fixed line: synthesized deterministically, just not kept
    assert not cache.put(key(), [b"pcm"]) and cache.bytes_held == 0


def test_only_declared_fixed_lines_are_cached_never_text_made_from_a_caller():
    cache = LineCache(max_bytes=1 << 20, fixed_lines=fixed_lines(KB))
    for line in (GREETING[0], PIN_PROMPT, VERIFY_FIRST["your order"], HANDOFF["caller_request"]):
        assert cache.cacheable(line)
    assert cache.cacheable("  Hello,   thanks for calling. ")  # same line after normalising spaces
    for said in (
        "Your order 1 0 0 4 2, the blue jumper, is shipped.",  # an order number read back
        "Thanks, Ann, you're verified.",  # a name, no digit
        "Please try again. You have 2 attempts left.",
        "I couldn't find order 5 5 5 on your account.",
        "hello, thanks for calling.",  # exact text only: case changes how it is said
    ):
        assert not cache.cacheable(said), said


def test_fixed_lines_hold_the_prompts_and_the_knowledge_answers_and_no_caller_digits():
    lines = fixed_lines(KB)
    kb = knowledge_lines(KB)
    assert set(PREWARM) <= set(lines) and set(kb) <= set(lines)
    assert any("Monday to Friday" in line for line in kb)
    # Digits come only from the company's own documents (a street number), never from the code's lines.
    assert not [line for line in lines if re.search(r"\d", line) and line not in kb]
    assert knowledge_lines(ROOT / "no-such-folder") == []


def test_a_deterministic_fixed_line_is_the_same_audio_every_time(piper):
    """What makes a cached line equal to a fresh one: piper without its noise repeats itself."""
    parts = quick_start(GREETING[0])
    once = [c for p in parts for c in piper.synthesize(p, 16000, deterministic=True)]
    again = [c for p in parts for c in piper.synthesize(p, 16000, deterministic=True)]
    assert once == again and sum(map(len, once)) > 16000  # over half a second of speech


def test_cache_size_setting(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert load_settings().tts_cache_mb == 32
    monkeypatch.setenv("VOICE_TTS_CACHE_MB", "0")
    assert load_settings().tts_cache_mb == 0
    monkeypatch.setenv("VOICE_TTS_CACHE_MB", "-1")
    with pytest.raises(ConfigError, match="VOICE_TTS_CACHE_MB"):
        load_settings()
