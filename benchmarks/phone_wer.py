"""Word error rate of the platform's ASR engine on phone audio against the same speech at 16 kHz.

    .venv/bin/python benchmarks/phone_wer.py [--noise-snr-db 20] [--threads 2]

Spoken test audio: piper's voice saying the latency benchmark's questions and lines with numbers
(orders, PINs), at 16 kHz, as a browser caller sends it. Each line is then put through a phone line:
band-limited to 300-3400 Hz, sampled at 8 kHz, μ-law encoded and decoded (common/mulaw.py, what Twilio
Media Streams carry), and resampled to 16 kHz as the Gateway's listener does. A third condition adds
white noise at `--noise-snr-db` before the phone line (a handset in a room). The same WhisperEngine the
ASR deployment runs transcribes every clip; printed: WER per condition (mean over lines, and the words
in error over all words) and each line's transcripts where any condition erred. Run it under the lock
(flock /tmp/voice-platform.lock) on a shared machine: it loads Whisper.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.audio import resample  # noqa: E402
from common.mulaw import pcm16_to_ulaw, ulaw_to_pcm16  # noqa: E402
from loadtests.latency import UTTERANCES  # noqa: E402

# Beside the questions: numbers (orders, PINs) and longer turns, where a narrow band costs most.
LINES = (
    UTTERANCES
    + """My order number is one zero zero four two.
My PIN is four three two one.
I want to return an item because it arrived damaged last week.
Can I change the delivery address for my order?
Please send me an email with the tracking number.
The package was left at the wrong door yesterday.""".splitlines()
)


def band_limit(pcm16: bytes, rate: int, low: float = 300.0, high: float = 3400.0) -> bytes:
    """The telephone channel's pass band (a brick wall in the frequency domain)."""
    x = np.frombuffer(pcm16, np.int16).astype(np.float64)
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    spectrum[(freqs < low) | (freqs > high)] = 0
    return np.clip(np.fft.irfft(spectrum, len(x)), -32768, 32767).astype(np.int16).tobytes()


def with_noise(pcm16: bytes, snr_db: float, seed: int = 0) -> bytes:
    x = np.frombuffer(pcm16, np.int16).astype(np.float64)
    voiced = x[np.abs(x) > 0.01 * 32768]
    power = np.mean((voiced if len(voiced) else x) ** 2)
    noise = np.random.default_rng(seed).normal(0, np.sqrt(power / 10 ** (snr_db / 10)), len(x))
    return np.clip(x + noise, -32768, 32767).astype(np.int16).tobytes()


def phone_line(pcm16k: bytes) -> bytes:
    """16 kHz speech as a phone call delivers it to the Gateway, back at 16 kHz."""
    narrow = resample(band_limit(pcm16k, 16000), 16000, 8000)
    return resample(ulaw_to_pcm16(pcm16_to_ulaw(narrow)), 8000, 16000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--noise-snr-db", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from deployments.asr.engine import WhisperEngine
    from deployments.tts.engine import PiperEngine
    from tests.test_engines import word_error_rate

    piper = PiperEngine()
    clean = [b"".join(piper.synthesize(line, 16000, deterministic=True)) for line in LINES]
    conditions = {
        "16 kHz PCM (browser)": clean,
        "8 kHz mu-law (phone)": [phone_line(c) for c in clean],
        f"8 kHz mu-law + noise {args.noise_snr_db:g} dB SNR": [
            phone_line(with_noise(c, args.noise_snr_db, i)) for i, c in enumerate(clean)
        ],
    }
    asr = WhisperEngine(cpu_threads=args.threads)
    print(f"{len(LINES)} lines, {sum(len(c) for c in clean) / 32000:.1f} s of speech; whisper on {asr.device}")
    results: dict[str, list[tuple[float, str]]] = {}
    for name, clips in conditions.items():
        t0 = time.perf_counter()
        texts = [asr.transcribe(c).text for c in clips]
        results[name] = [(word_error_rate(line, text), text) for line, text in zip(LINES, texts)]
        elapsed = time.perf_counter() - t0
        wers = [w for w, _ in results[name]]
        words = sum(len(line.split()) for line in LINES)
        errors = sum(w * len(line.split()) for (w, _), line in zip(results[name], LINES))
        print(
            f"{name:<34} WER mean {statistics.mean(wers):.3f}  words {errors / words:.3f}"
            f"  lines with errors {sum(w > 0 for w in wers)}/{len(LINES)}  ({elapsed:.1f} s)"
        )
    for i, line in enumerate(LINES):
        if any(results[name][i][0] > 0 for name in results):
            print(f"  {line!r}")
            for name in results:
                print(f"    {name:<34} {results[name][i][0]:.2f} {results[name][i][1]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
