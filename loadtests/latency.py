"""Voice-to-voice latency of one call, with and without a lever (preemptive turns, or the TTS cache), same run.

    .venv/bin/python loadtests/latency.py [--turns 12] [--port 8123] [--compare preemptive|tts-cache]

Starts its own local Ray (loopback) and the platform from serve_config.yaml, then makes one
call per mode and speaks recorded utterances (piper, deterministic) at real time.
Voice-to-voice is measured by this client: from the last voiced sample of the utterance
leaving the client to the first agent audio byte arriving. Between the two modes only one
deployment is redeployed, models stay loaded: the Gateway with VOICE_PREEMPTIVE_MS=0
(`--compare preemptive`, the default), or TTS with VOICE_TTS_CACHE_MB=0 (`--compare tts-cache`).
After the call, `--greetings` more calls per mode time connect to the greeting's first audio byte.
Prints each turn (client voice-to-voice, then the server's transcript/dialogue/TTS/first-audio
ms), P50/P95 per mode, each server stage's median (from `turn.metrics`), how many turns
were answered from a run-ahead, the greetings' P50/P95, and the ratio of the two modes.
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

from common.audio import trailing_silence_s  # noqa: E402

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


async def greetings(url: str, calls: int) -> list[float]:
    """Connect (WebSocket opened) to the greeting's first audio byte, one call at a time, ms."""
    from serve_app.call import CallClient

    times = []
    for i in range(calls):
        client = CallClient(url, f"latency-greeting-{i}")
        t0 = time.monotonic()
        await client.connect()
        await client.wait_for(lambda c=client: c.audio_frames, 30)
        times.append((client.audio_frames[0][0] - t0) * 1000)
        await client.hangup()
        await client.close()
        await asyncio.sleep(1.0)  # the Gateway's pool of session actors fills again
    return times


def summary(name: str, rows: list[dict], greeted: list[float]) -> dict:
    v2v = [r["v2v_ms"] for r in rows if r["v2v_ms"] is not None]
    out = {
        "mode": name,
        "turns": len(rows),
        "answered": len(v2v),
        "p50": percentile(v2v, 50),
        "p95": percentile(v2v, 95),
        "greeting_p50": percentile(greeted, 50),
        "greeting_p95": percentile(greeted, 95),
    }
    for stage in STAGES:
        vals = [r[stage] for r in rows if isinstance(r.get(stage), (int, float))]
        out[stage] = statistics.median(vals) if vals else float("nan")
    out["preempted"] = {k: sum(1 for r in rows if r.get("preempted") == k) for k in ("reply", "transcript", "none")}
    return out


def ready(base: str) -> bool:
    with urllib.request.urlopen(f"{base}/ready", timeout=5) as r:
        return r.status == 200


# what each comparison redeploys: the deployment, its variable (0 turns the lever off), the modes' names
COMPARE = {
    "preemptive": ("Gateway", "VOICE_PREEMPTIVE_MS", "preemptive {} ms", "preemptive off"),
    "tts-cache": ("TTS", "VOICE_TTS_CACHE_MB", "tts cache {} MB", "tts cache off"),
}


def switched(base: str, deployment: str, value: str) -> bool:
    """Whether the running deployment answers with `value`: the Gateway's /health, TTS's cache size."""
    if deployment == "Gateway":
        return _health(base).get("preemptive_ms") == int(value)
    from ray import serve

    stats = serve.get_deployment_handle("TTS", app_name="voice").cache_stats.remote().result(timeout_s=5)
    return stats["max_bytes"] == int(float(value) * 2**20)


def wait_until(check, what: str, streak_of: int = 1, timeout: float = 120) -> None:
    """Until `check()` holds `streak_of` times in a row (old replicas drain during a redeploy)."""
    deadline, streak = time.monotonic() + timeout, 0
    while streak < streak_of:
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        try:
            streak = streak + 1 if check() else 0
        except Exception:
            streak = 0
        time.sleep(0.2)


def _health(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
        return json.load(r)


def wait_ready(base: str, timeout: float = 120) -> None:
    wait_until(lambda: ready(base), "platform not ready", timeout=timeout)


def wait_health(base: str, key: str, expect, timeout: float = 120) -> None:
    """Until /health answers come from a Gateway (five in a row) with `key` set to `expect`."""
    wait_until(lambda: _health(base).get(key) == expect, f"/health {key} is not {expect}", 5, timeout)


def start_ray() -> None:
    """A fresh local Ray on loopback for a benchmark's own platform (VOICE_RAY_NUM_CPUS logical CPUs)."""
    import ray

    from serve_app import cluster

    cluster.loopback_env()
    ray.init(
        address="local",
        _node_ip_address="127.0.0.1",  # loopback only
        num_cpus=float(os.environ.get("VOICE_RAY_NUM_CPUS", "4")),
        include_dashboard=False,
        log_to_driver=False,
        namespace="serve",
    )


def stop_ray() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--turns", type=int, default=12, help="turns per mode")
    p.add_argument("--port", type=int, default=0, help="HTTP port for the platform (default: a free one)")
    p.add_argument("--compare", choices=sorted(COMPARE), default="preemptive", help="the lever on, then off")
    p.add_argument("--greetings", type=int, default=8, help="calls per mode timed to the greeting's first audio")
    args = p.parse_args()

    from common.config import load_settings
    from deployments.tts.engine import PiperEngine
    from serve_app import cluster

    piper = PiperEngine()
    clips = [(t, b"".join(piper.synthesize(t, 16000, deterministic=True))) for t in UTTERANCES]
    port = args.port or _free_port()
    os.environ.setdefault("VOICE_IDLE_CHECKIN_S", "60")
    os.environ.setdefault("VOICE_CALLS_PER_MINUTE_PER_ADDRESS", "1000")  # every call comes from 127.0.0.1
    start_ray()
    base, url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/call"
    results = []
    deployment, variable, on_name, off_name = COMPARE[args.compare]
    on = os.environ.get(variable) or format(getattr(load_settings(), variable.removeprefix("VOICE_").lower()), "g")
    try:
        for name, value in ((on_name.format(on), on), (off_name, "0")):
            config = cluster.load_config(http_port=port, env=cluster.settings_env())
            spec = next(d for d in config["applications"][0]["deployments"] if d["name"] == deployment)
            spec["ray_actor_options"]["runtime_env"] = {"env_vars": {variable: value}}
            t0 = time.monotonic()
            cluster.deploy(config)
            wait_until(lambda: ready(base), "platform not ready")
            wait_until(lambda v=value: switched(base, deployment, v), f"{deployment} not redeployed", 5)
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
            greeted = asyncio.run(greetings(url, args.greetings))
            print(f"  greetings, connect to first audio: {' '.join(f'{g:.0f}' for g in greeted)} ms", flush=True)
            results.append(summary(name, rows, greeted))
    finally:
        stop_ray()

    print(
        "\nmode             turns  P50 ms  P95 ms  "
        + "  ".join(s.replace("_ms", "") for s in STAGES)
        + "  greeting P50/P95  run-ahead used (reply/transcript/none)"
    )
    for s in results:
        stages = "  ".join(f"{s[k]:>{len(k) - 3}.0f}" for k in STAGES)
        print(
            f"{s['mode']:<16} {s['answered']:>3}/{s['turns']:<3} {s['p50']:>6.0f}  {s['p95']:>6.0f}  "
            f"{stages}  {s['greeting_p50']:>6.0f}/{s['greeting_p95']:<6.0f}  {s['preempted']}"
        )
    on, off = results
    print(
        f"\nP50 on/off: {on['p50'] / off['p50']:.2f}   P95 on/off: {on['p95'] / off['p95']:.2f}   "
        f"greeting P50 on/off: {on['greeting_p50'] / off['greeting_p50']:.2f}   "
        "(target P50 <= 700 ms, P95 <= 1000 ms)"
    )
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
