"""Synthesized audio of fixed lines, kept per TTS replica and bounded in memory (LRU by bytes).

A greeting, a PIN prompt, a hand-off line or a knowledge-base answer is said word for word to
caller after caller; its audio is made once and its stored chunks are streamed again, in the
same sizes and order, so the Gateway paces a hit exactly as it paces a fresh synthesis.

What may be cached (`LineCache.cacheable`): only a line in the set of fixed lines, which the
dialogue declares (`deployments.dialogue.fixed_lines`) from its own constants and the
knowledge-base documents, built at replica start before any caller speaks. Text made from what
a caller said or owns (an order number read back, "Thanks, Ann, you're verified.") is never in
it, so it is never kept: the cache outlives the call, and would hold personal data past the
call's retention; and a hit is faster than a miss, which would tell one caller what another's
reply said. A rule by shape (no digits, no names) would let a name through and keep out the
company's own "200 Market Street"; a declared set needs no guess.

Fixed lines are always synthesized deterministically (piper's noise off), cache on or off, so
audio from the cache is the audio a fresh synthesis gives. Plain Python: no Ray here.
"""

from __future__ import annotations

import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass


def normalize_text(text: str) -> str:
    """One form per line as written: Unicode NFC and single spaces. Case and punctuation stay,
    since they change how piper says it."""
    return " ".join(unicodedata.normalize("NFC", text).split())


@dataclass(frozen=True)
class LineKey:
    """What decides the audio: the voice, the text as synthesized (its parts: a reply's first
    sentence is cut sooner, see `engine.quick_start`), the output sample rate and the speaking
    rate (piper's length scale)."""

    voice: str
    parts: tuple[str, ...]
    sample_rate: int
    length_scale: float


class LineCache:
    """LRU of chunk lists bounded by their total bytes; `max_bytes` 0 keeps nothing. Thread-safe:
    a pre-warm thread fills it while the replica serves."""

    def __init__(self, max_bytes: int, fixed_lines: Iterable[str] = ()):
        self.max_bytes = max_bytes
        self._fixed = frozenset(normalize_text(line) for line in fixed_lines)
        self._entries: OrderedDict[LineKey, tuple[bytes, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes_held = 0
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def is_fixed(self, text: str) -> bool:
        """A line the dialogue declared fixed: synthesized deterministically, cached when enabled."""
        return normalize_text(text) in self._fixed

    def cacheable(self, text: str) -> bool:
        return self.enabled and self.is_fixed(text)

    def get(self, key: LineKey) -> tuple[bytes, ...] | None:
        """The stored chunks, counted as a hit or a miss."""
        with self._lock:
            chunks = self._entries.get(key)
            if chunks is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return chunks

    def put(self, key: LineKey, chunks: Iterable[bytes]) -> bool:
        """Keep a complete synthesis, dropping the least recently used lines to make room; a line
        larger than the whole budget is not kept."""
        chunks = tuple(chunks)
        size = sum(len(c) for c in chunks)
        if not self.enabled or size > self.max_bytes:
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes_held -= sum(len(c) for c in old)
            while self._entries and self.bytes_held + size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.bytes_held -= sum(len(c) for c in evicted)
            self._entries[key] = chunks
            self.bytes_held += size
        return True

    def __contains__(self, key: LineKey) -> bool:
        with self._lock:
            return key in self._entries

    def stats(self) -> dict:
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "bytes": self.bytes_held,
                "lines": len(self._entries),
                "max_bytes": self.max_bytes,
            }
