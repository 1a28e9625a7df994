"""`voice-call` (`python -m serve_app.call FILE.wav ...`): one call from the terminal.

Streams each file into one call at real-time pace, silence between, like a microphone
would; saves the agent's audio; prints transcripts, agent text and, per turn, the
voice-to-voice latency: last voiced caller sample sent to first agent audio byte received
(a file's trailing silence counts: the caller is waiting through it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import websockets

from serve_app.call import CallClient, speak_turn


async def run_cli(args) -> int:
    from common.audio import read_wav, resample, write_wav
    from models.protocol import SUPPORTED_SAMPLE_RATES

    clips = []
    for path in args.files:
        pcm, rate = read_wav(path)
        if rate not in SUPPORTED_SAMPLE_RATES:
            pcm, rate = resample(pcm, rate, 16000), 16000
        clips.append((path, pcm, rate))
    rate = clips[0][2]
    clips = [(p, resample(pcm, r, rate), rate) for p, pcm, r in clips]
    client = CallClient(args.url, args.caller_id, rate, args.locale, resume_for=args.resume_for)
    try:
        session = await client.connect()
    except (TimeoutError, OSError, ConnectionError, websockets.InvalidStatus) as exc:
        print(f"could not start a call at {args.url}: {exc}", file=sys.stderr)
        return 2
    print(
        f"session {session['session_id']} "
        f"(in {session['input_sample_rate']} Hz, out {session['output_sample_rate']} Hz)"
    )
    await client.silence_until(
        lambda: any(e["type"] == "agent.state" and e["state"] == "listening" for e in client.events), 30
    )
    print("agent: " + " ".join(e["text"] for e in client.of_type("agent.text")))
    reports = []
    for path, pcm, _ in clips:
        await client.silence_until(lambda: False, args.gap) if args.gap else None
        report = await speak_turn(client, pcm, Path(path).name, args.timeout)
        reports.append(report)
        lat = f"{report.latency_ms:.0f} ms" if report.latency_ms is not None else "no audio"
        print(f"you ({report.file}): {report.transcript!r}")
        print(f"agent: {' '.join(report.agent_text)}")
        print(f"  voice-to-voice {lat}; server stages {report.metrics}")
        if client.closed:
            break
    await client.hangup()
    await client.close()
    ended = client.of_type("session.ended")
    print(f"call ended: {ended[-1]['reason'] if ended else 'no session.ended'} (close {client.close_code})")
    if client.resumes:
        print(f"the connection dropped and the call was resumed {client.resumes} time(s)")
    out = Path(args.out)
    write_wav(out, bytes(client.audio), client.session["output_sample_rate"])
    print(f"agent audio ({len(client.audio) / 2 / client.session['output_sample_rate']:.1f} s) saved to {out}")
    lats = [r.latency_ms for r in reports if r.latency_ms is not None]
    if lats:
        print(f"voice-to-voice per turn (ms): {', '.join(f'{x:.0f}' for x in lats)}")
    for e in client.of_type("error"):
        print(f"server error event: {e['code']}: {e['message']}", file=sys.stderr)
    return 0 if len(lats) == len(clips) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="voice-call", description="Make one call: speak WAV files to the agent.")
    p.add_argument("files", nargs="+", help="16-bit PCM WAV files, one caller turn each")
    p.add_argument("--url", default="ws://127.0.0.1:8000/ws/call")
    p.add_argument("--caller-id", default="cli-caller")
    p.add_argument("--locale", default="en-US")
    p.add_argument("--out", default="agent_audio.wav", help="where to save the agent's audio")
    p.add_argument("--gap", type=float, default=0.5, help="seconds of silence before each turn")
    p.add_argument("--timeout", type=float, default=30, help="seconds to wait for each answer")
    p.add_argument("--resume-for", type=float, default=30, help="seconds to dial a dropped call back (0: never)")
    args = p.parse_args(argv)
    return asyncio.run(run_cli(args))
