"""G.711 μ-law, the telephone network's codec (Twilio Media Streams: 8 kHz, one byte a sample).

Tables built once with numpy: `audioop` does the same but is deprecated and gone in Python 3.13.
Encoding and decoding match audioop byte for byte (tests/test_phone_line.py checks every sample).
"""

from __future__ import annotations

import numpy as np

_BIAS = 0x84


def _decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _encode_table() -> np.ndarray:
    """Every int16 sample (indexed by its uint16 bit pattern) to its μ-law byte (Sun's g711.c,
    which audioop and most carriers' stacks follow: 14-bit magnitude, bias 0x21)."""
    sample = np.arange(65536, dtype=np.int32)
    sample = np.where(sample >= 32768, sample - 65536, sample) >> 2
    mask = np.where(sample < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(sample), 8159) + 0x21
    segment = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), magnitude)
    code = np.where(segment >= 8, 0x7F, (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F))
    return (code ^ mask).astype(np.uint8)


_DECODE = _decode_table()
_ENCODE = _encode_table()


def ulaw_to_pcm16(data: bytes) -> bytes:
    """μ-law bytes to PCM s16le, one sample per byte."""
    return _DECODE[np.frombuffer(data, dtype=np.uint8)].tobytes()


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """PCM s16le to μ-law bytes (an odd trailing byte is dropped)."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
    return _ENCODE[samples.view(np.uint16)].tobytes()
