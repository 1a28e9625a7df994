"""Voice-to-voice latency of one call, with and without preemptive transcription, same run.

    .venv/bin/python loadtests/latency.py [--turns 12] [--port 8123]

Starts its own local Ray (loopback) and the platform from serve_config.yaml, then makes one
call per mode and speaks recorded utterances (piper, deterministic) at real time.
Voice-to-voice is measured by this client: from the last voiced sample of the utterance
leaving the client to the first agent audio byte arriving. Between the two modes only the
Gateway is redeployed (VOICE_PREEMPTIVE_MS=0 turns preemption off); models stay loaded.
Prints each turn (client voice-to-voice, then the server's transcript/dialogue/TTS/first-audio
ms), P50/P95 per mode, each server stage's median (from `turn.metrics`), how many turns
were answered from a run-ahead, and the ratio of the two modes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

UTTERANCES = [
    "What are your opening hours?",
    "How long is the warranty?",
    "Do you ship to Canada?",
    "How do I return an item?",
    "Are you open on Sunday?",
    "How much does shipping cost?",
]
STAGES = [
    "endpoint_delay_ms",
    "eos_to_transcript_ms",
    "dialogue_first_sentence_ms",
    "tts_first_audio_ms",
    "eos_to_first_audio_ms",
    "asr_compute_ms",
    "dialogue_engine_ms",
    "orchestration_ms",
]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def one_call(url: str, clips: list[tuple[str, bytes]], turns: int) -> list[dict]:
    from common.audio import trailing_silence_s
    from serve_app.call import CallClient, speak_turn

    client = CallClient(url, "latency-bench")
    await client.connect()
    await client.silence_until(
        lambda: any(e["type"] == "agent.state" and e["state"] == "listening" for e in client.events), 30
    )
    rows = []
    for i in range(turns):
        text, pcm = clips[i % len(clips)]
        await client.silence_until(lambda: False, 1.0)
        mark = len(client.events)
        report = await speak_turn(client, pcm, text, timeout=30)
        last_speech = report.speech_end - trailing_silence_s(pcm)
        metrics = [e for e in client.events[mark:] if e["type"] == "turn.metrics"]
        rows.append(
            {
                "text": text,
                "heard": report.transcript,
                "v2v_ms": (report.first_audio - last_speech) * 1000 if report.first_audio else None,
                **(metrics[-1] if metrics else {}),
            }
        )
    await client.hangup()
    await client.close()
    return rows


def summary(name: str, rows: list[dict]) -> dict:
    v2v = [r["v2v_ms"] for r in rows if r["v2v_ms"] is not None]
    out = {
        "mode": name,
        "turns": len(rows),
        "answered": len(v2v),
        "p50": percentile(v2v, 50),
        "p95": percentile(v2v, 95),
    }
    for stage in STAGES:
        vals = [r[stage] for r in rows if isinstance(r.get(stage), (int, float))]
        out[stage] = statistics.median(vals) if vals else float("nan")
    out["preempted"] = {k: sum(1 for r in rows if r.get("preempted") == k) for k in ("reply", "transcript", "none")}
    return out


def wait_ready(base: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/ready", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("platform not ready")


def wait_preemptive(base: str, expect: int, timeout: float = 120) -> None:
    """Until /health answers come from a Gateway with the expected preemptive setting."""
    deadline, streak = time.monotonic() + timeout, 0
    while streak < 5 and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                streak = streak + 1 if json.load(r).get("preemptive_ms") == expect else 0
        except OSError:
            streak = 0
        time.sleep(0.2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--turns", type=int, default=12, help="turns per mode")
    p.add_argument("--port", type=int, default=0, help="HTTP port for the platform (default: a free one)")
    args = p.parse_args()

    import ray

    from common.config import load_settings
    from deployments.tts.engine import PiperEngine
    from serve_app import cluster

    piper = PiperEngine()
    clips = [(t, b"".join(piper.synthesize(t, 16000, deterministic=True))) for t in UTTERANCES]
    port = args.port or _free_port()
    cluster.loopback_env()
    os.environ.setdefault("VOICE_IDLE_CHECKIN_S", "60")
    ray.init(
        address="local",
        num_cpus=float(os.environ.get("VOICE_RAY_NUM_CPUS", "4")),
        include_dashboard=False,
        log_to_driver=False,
        namespace="serve",
    )
    base, url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/call"
    results = []
    on = os.environ.get("VOICE_PREEMPTIVE_MS") or str(load_settings().preemptive_ms)
    try:
        for name, preemptive in ((f"preemptive {on} ms", on), ("preemptive off", "0")):
            config = cluster.load_config(http_port=port, env=cluster.settings_env())
            gateway = next(d for d in config["applications"][0]["deployments"] if d["name"] == "Gateway")
            gateway["ray_actor_options"]["runtime_env"] = {"env_vars": {"VOICE_PREEMPTIVE_MS": preemptive}}
            t0 = time.monotonic()
            cluster.deploy(config)
            wait_ready(base)
            wait_preemptive(base, int(preemptive))
            print(f"[{name}] platform ready in {time.monotonic() - t0:.0f} s; {args.turns} turns", flush=True)
            rows = asyncio.run(one_call(url, clips, args.turns))
            for r in rows:
                v2v = f"{r['v2v_ms']:.0f}" if r["v2v_ms"] is not None else "-"
                server = "/".join(f"{r[k]:.0f}" if isinstance(r.get(k), (int, float)) else "-" for k in STAGES[1:])
                print(
                    f"  {v2v:>5} ms  server {server:<19}  {r.get('preempted', '-'):<10}  "
                    f"{r['text']!r} -> {r['heard']!r}",
                    flush=True,
                )
            results.append(summary(name, rows))
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()

    print(
        "\nmode             turns  P50 ms  P95 ms  "
        + "  ".join(s.replace("_ms", "") for s in STAGES)
        + "  run-ahead used (reply/transcript/none)"
    )
    for s in results:
        stages = "  ".join(f"{s[k]:>{len(k) - 3}.0f}" for k in STAGES)
        print(
            f"{s['mode']:<16} {s['answered']:>3}/{s['turns']:<3} {s['p50']:>6.0f}  {s['p95']:>6.0f}  "
            f"{stages}  {s['preempted']}"
        )
    on, off = results
    print(
        f"\nP50 on/off: {on['p50'] / off['p50']:.2f}   P95 on/off: {on['p95'] / off['p95']:.2f}   "
        "(target P50 <= 700 ms, P95 <= 1000 ms)"
    )
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
