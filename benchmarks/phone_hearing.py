"""Hearing on the phone line against the same speech at 16 kHz: VAD, endpointer and ASR together.

    .venv/bin/python benchmarks/phone_hearing.py [--noise-snr-db 20] [--pause-ms 450] [--no-asr]

Piper's voice says benchmarks/phone_wer.py's lines, each whole and again in two halves with a
`--pause-ms` pause between their voiced ends (shorter than the 500 ms endpoint: still one turn). Each
clip gets 0.5 s of silence before and 1.2 s after and is heard four ways: at 16 kHz as a browser sends
it, and through the phone line (300-3400 Hz, 8 kHz, μ-law, back to 16 kHz as the listener resamples it),
each clean and with white noise at `--noise-snr-db`. The phone line is heard with the 16 kHz settings
(before), with silero's 8 kHz model instead (the other knob), and with the phone profile a call of 8 kHz
input gets (after: deployments/vad/hearing_profile.py). The truth is the clean clip's voiced spans (10 ms
hops over -40 dBFS, stops inside words bridged).

Printed per row, means over the clips: VAD onset (the first voiced frame after the speech starts) and end
(the first silent frame after it ends); missed speech and false speech frames (100 ms from each edge left
out); lost speech (speech frames in no turn's audio: words the ASR never gets); the endpointer's
SpeechStarted and SpeechEnded after the true start and end (its min-speech and end-silence waits
included); extra turns (a pause ending a turn, or noise starting one); clips not heard at all; and the
mean WER of the Whisper engine over each clip's turn audio (what the platform transcribes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.phone_wer import LINES, phone_line, with_noise  # noqa: E402
from deployments.vad.engine import FRAME_MS, FRAME_SAMPLES, SileroVAD, SpeechEnded, SpeechStarted  # noqa: E402
from deployments.vad.hearing_profile import HearingProfile, hearing_profile  # noqa: E402

RATE = 16000
LEAD_S, TAIL_S, EDGE_MS = 0.5, 1.2, 100


@dataclass
class Clip:
    text: str
    pcm: bytes  # 16 kHz, silence around
    spans: list[tuple[float, float]]  # voiced spans in seconds


def voiced_spans(pcm: bytes, offset_s: float, gap_s: float = 0.15) -> list[tuple[float, float]]:
    """Spans of 10 ms hops over -40 dBFS, gaps shorter than `gap_s` bridged (stops inside words)."""
    x = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768
    hops = len(x) // 160
    rms = np.sqrt(np.mean(x[: hops * 160].reshape(hops, 160) ** 2, axis=1))
    spans: list[list[float]] = []
    for i in np.flatnonzero(rms > 0.01):
        start, end = offset_s + i / 100, offset_s + (i + 1) / 100
        if spans and start - spans[-1][1] < gap_s:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [(a, b) for a, b in spans]


def trimmed(pcm: bytes) -> bytes:
    """Piper's clip cut to its voiced span (20 ms kept each side), so a pause is the gap we put."""
    spans = voiced_spans(pcm, 0.0)
    start, end = max(0, int((spans[0][0] - 0.02) * RATE)), int((spans[-1][1] + 0.02) * RATE)
    return pcm[start * 2 : end * 2]


def make_clips(piper, pause_ms: float) -> list[Clip]:
    """Each line said whole, and each line of four words or more again in two halves."""
    said = [[line] for line in LINES]
    said += [
        [" ".join(w[: len(w) // 2]), " ".join(w[len(w) // 2 :])] for w in (x.split() for x in LINES) if len(w) >= 4
    ]
    clips = []
    for parts in said:
        pcm, spans, at = bytes(int(LEAD_S * RATE) * 2), [], LEAD_S
        for j, part in enumerate(parts):
            speech = trimmed(b"".join(piper.synthesize(part, RATE, deterministic=True)))
            if j:
                pcm += bytes(int(pause_ms / 1000 * RATE) * 2)
                at += pause_ms / 1000
            spans += voiced_spans(speech, at)
            pcm += speech
            at += len(speech) / 2 / RATE
        clips.append(Clip(" ".join(parts), pcm + bytes(int(TAIL_S * RATE) * 2), spans))
    return clips


def hear(vad: SileroVAD, profile: HearingProfile, settings, clip: Clip, pcm: bytes) -> dict:
    """One clip through a VAD stream and an endpointer set up as `profile` says."""
    stream = vad.stream(profile.vad_rate)
    probs = []
    original = stream.prob

    def prob(frame):
        probs.append(original(frame))
        return probs[-1]

    stream.prob = prob
    ep = profile.endpointer(stream, settings, end_silence_ms=settings.end_silence_ms, preemptive_ms=0)
    events = []
    for i in range(0, len(pcm), 640):  # 20 ms chunks, as callers send them
        events += ep.feed(pcm[i : i + 640])
    ends = np.arange(1, len(probs) + 1) * FRAME_SAMPLES / RATE  # each frame's end, in seconds
    voiced = np.array(probs) >= profile.vad_threshold
    onset, end = clip.spans[0][0], clip.spans[-1][1]
    edge = EDGE_MS / 1000
    inside = np.zeros(len(ends), bool)
    near = np.zeros(len(ends), bool)
    for a, b in clip.spans:
        inside |= (ends - FRAME_MS / 1000 >= a + edge) & (ends <= b - edge)
        near |= (ends > a - edge) & (ends - FRAME_MS / 1000 < b + edge)
    after_onset = np.flatnonzero(voiced & (ends > onset))
    after_end = np.flatnonzero(~voiced & (ends > end))
    started = [e.at_sample / RATE for e in events if isinstance(e, SpeechStarted)]
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    heard = np.zeros(len(ends), bool)  # frames inside a turn's audio, pre-roll included
    for e in ended:
        heard |= (ends * RATE > e.at_sample - len(e.audio) // 2) & (ends * RATE <= e.at_sample)
    return {
        "lost": int(np.sum(inside & ~heard)),
        "vad_onset_ms": (ends[after_onset[0]] - onset) * 1000 if len(after_onset) else None,
        "vad_end_ms": (ends[after_end[0]] - end) * 1000 if len(after_end) else None,
        "missed": int(np.sum(inside & ~voiced)),
        "speech_frames": int(np.sum(inside)),
        "false": int(np.sum(~near & voiced)),
        "silence_frames": int(np.sum(~near)),
        "ep_onset_ms": (started[0] - onset) * 1000 if started else None,
        "ep_end_ms": (ended[-1].at_sample / RATE - end) * 1000 if ended else None,
        "turns": len(ended),
        "audio": b"".join(e.audio for e in ended),
    }


def _mean(values) -> str:
    values = [v for v in values if v is not None]
    return f"{statistics.mean(values):6.0f}" if values else "     -"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--noise-snr-db", type=float, default=20.0)
    parser.add_argument("--pause-ms", type=float, default=450.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-asr", action="store_true", help="VAD and endpointer only (seconds, not minutes)")
    args = parser.parse_args(argv)

    from common.config import Settings
    from deployments.tts.engine import PiperEngine
    from tests.test_engines import word_error_rate

    settings = Settings()
    wide, phone = hearing_profile(settings, 16000), hearing_profile(settings, 8000)
    model_8k = replace(wide, name="8 kHz model only", vad_rate=8000)  # the model without the phone thresholds
    clips = make_clips(PiperEngine(), args.pause_ms)
    noisy = [with_noise(c.pcm, args.noise_snr_db, i) for i, c in enumerate(clips)]
    snr = f"+{args.noise_snr_db:g}dB"
    rows = [("16k", [c.pcm for c in clips], wide), (f"16k{snr}", noisy, wide)]
    for name, pcms in (("phone", [phone_line(c.pcm) for c in clips]), (f"phone{snr}", [phone_line(n) for n in noisy])):
        rows += [
            (f"{name} before", pcms, wide),
            (f"{name} 8k model only", pcms, model_8k),
            (f"{name} after", pcms, phone),
        ]
    vad = SileroVAD()
    asr = None
    if not args.no_asr:
        from deployments.asr.engine import WhisperEngine

        asr = WhisperEngine(cpu_threads=args.threads)
    paused = len(clips) - len(LINES)
    print(f"{len(clips)} clips ({paused} with a {args.pause_ms:g} ms pause), {settings.end_silence_ms} ms endpoint")
    print(f"before: {wide}\nafter:  {phone}")
    print(f"{'':<25}VAD onset / end ms  missed%  false%  lost%  endpointer onset / end ms  extra turns  unheard  WER")
    for label, pcms, prof in rows:
        r = [hear(vad, prof, settings, c, p) for c, p in zip(clips, pcms)]
        missed = 100 * sum(x["missed"] for x in r) / max(1, sum(x["speech_frames"] for x in r))
        false = 100 * sum(x["false"] for x in r) / max(1, sum(x["silence_frames"] for x in r))
        lost = 100 * sum(x["lost"] for x in r) / max(1, sum(x["speech_frames"] for x in r))
        wer = "    -"
        if asr is not None:
            wers = [word_error_rate(c.text, asr.transcribe(x["audio"]).text) for c, x in zip(clips, r)]
            wer = f"{statistics.mean(wers):.3f}"
        vad_at = f"{_mean(x['vad_onset_ms'] for x in r)} /{_mean(x['vad_end_ms'] for x in r)}"
        ep_at = f"{_mean(x['ep_onset_ms'] for x in r)} /{_mean(x['ep_end_ms'] for x in r)}"
        print(
            f"{label:<25}{vad_at:>17}  {missed:7.1f}  {false:6.1f}  {lost:5.1f}  {ep_at:>25}"
            f"  {sum(max(0, x['turns'] - 1) for x in r):11d}  {sum(x['turns'] == 0 for x in r):7d}  {wer}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
