"""Spoken sample utterances made offline with the piper voice, for first calls and tests."""

from __future__ import annotations

from pathlib import Path

SAMPLES = {
    "hours.wav": "What are your opening hours?",
    "order.wav": "I want to check the status of my order.",
    "goodbye.wav": "That's all, thank you. Goodbye.",
}


def synthesize_wav(engine, text: str, path: Path, rate: int = 16000) -> Path:
    from common.audio import write_wav

    pcm = b"".join(engine.synthesize(text, rate, deterministic=True))
    write_wav(path, pcm, rate)
    return path


def make_samples(folder: Path, rate: int = 16000) -> list[Path]:
    """Create the sample WAVs that are missing; return all their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    missing = [n for n in SAMPLES if not (folder / n).exists()]
    if missing:
        from deployments.tts.engine import PiperEngine

        engine = PiperEngine()
        for name in missing:
            synthesize_wav(engine, SAMPLES[name], folder / name, rate)
    return [folder / n for n in SAMPLES]
