"""Gateway and Serve proxy CPU with agent audio in 20 ms against 100 ms messages, same run.

    flock /tmp/voice-platform.lock .venv/bin/python benchmarks/output_frames.py [--calls 4] [--frames 20,40,100]

Starts its own local Ray (loopback) and the platform; per VOICE_OUTPUT_FRAME_MS only the Gateway
is redeployed (models stay loaded). Each mode runs the same load: `--calls` concurrent callers,
each speaking recorded questions at real time, barging in on a long answer and asking again.
Prints per mode the CPU of the Gateway and of Serve's HTTP proxy (psutil, user + system time
over the load, % of one core), agent audio messages per second of audio, and per barge-in the
time from the caller's first interrupting sample to `audio.clear`, and the agent audio that
arrived after that first sample (what the client had to drop).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.latency import _free_port, wait_health, wait_ready  # noqa: E402

QUESTIONS = ["What are your opening hours?", "Do you ship to Canada?"]
BARGE = "Wait, where is my order?"
RATE = 16000


def processes(title: str) -> list[psutil.Process]:
    """Ray workers whose process title or command line names `title` (Gateway, ProxyActor)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(title in part for part in p.info["cmdline"] or []):
                found.append(p)
        except psutil.Error:
            pass
    return found


def cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


async def one_caller(url: str, name: str, clips: dict[str, bytes], out: dict) -> None:
    from serve_app.call import CallClient, speak_turn

    client = CallClient(url, name)
    await client.connect()
    await client.silence_until(lambda: any(e.get("state") == "listening" for e in client.events), 60)
    for q in QUESTIONS:
        await speak_turn(client, clips[q], q, timeout=60)
    # a long answer, cut once a second of it has arrived
    mark = len(client.timeline)
    await client.send_json({"type": "text", "text": "how long is the warranty"})

    def audio_since(index: int) -> float:
        return sum(n for kind, n in client.timeline[index:] if kind == "audio") / 2 / RATE

    await client.silence_until(lambda: audio_since(mark) >= 1.0, 60)
    n_events, n_frames, barge_at = len(client.events), len(client.audio_frames), time.monotonic()
    await speak_turn(client, clips[BARGE], BARGE, timeout=60)
    clear = next((e for e in client.events[n_events:] if e["type"] == "audio.clear"), None)
    if clear is not None:
        out["clear_ms"].append((clear["_at"] - barge_at) * 1000)
        late = sum(n for at, n in client.audio_frames[n_frames:] if at <= clear["_at"])
        out["late_audio_ms"].append(late / 2 / RATE * 1000)
    out["frames"] += len(client.audio_frames)
    out["audio_s"] += len(client.audio) / 2 / RATE
    await client.hangup()
    await client.close()


async def load(url: str, calls: int, clips: dict[str, bytes]) -> dict:
    out = {"clear_ms": [], "late_audio_ms": [], "frames": 0, "audio_s": 0.0}
    tasks = [one_caller(url, f"frames-{i}", clips, out) for i in range(calls)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    out["failed"] = [repr(r) for r in results if isinstance(r, BaseException)]
    return out


def run_mode(base: str, url: str, calls: int, clips: dict[str, bytes]) -> dict:
    gateway, proxy = processes("Gateway"), processes("ProxyActor")
    g0, p0, t0 = cpu_s(gateway), cpu_s(proxy), time.monotonic()
    out = asyncio.run(load(url, calls, clips))
    wall = time.monotonic() - t0
    out.update(
        wall_s=wall,
        gateway_pct=(cpu_s(gateway) - g0) / wall * 100,
        proxy_pct=(cpu_s(proxy) - p0) / wall * 100,
        n_gateway=len(gateway),
        n_proxy=len(proxy),
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=4)
    ap.add_argument("--frames", default="20,100", help="VOICE_OUTPUT_FRAME_MS values, in order")
    args = ap.parse_args()

    import ray
    from ray import serve

    from deployments.tts.engine import PiperEngine
    from serve_app import cluster

    piper = PiperEngine()
    clips = {t: b"".join(piper.synthesize(t, RATE, deterministic=True)) for t in [*QUESTIONS, BARGE]}
    port = _free_port()
    os.environ.setdefault("VOICE_IDLE_CHECKIN_S", "60")
    os.environ.setdefault("VOICE_CALLS_PER_MINUTE_PER_ADDRESS", "1000")
    cluster.local_ray(4)
    base, url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/call"
    results = []
    try:
        for frame_ms in [int(f) for f in args.frames.split(",")]:
            config = cluster.load_config(http_port=port, env=cluster.settings_env())
            gateway = next(d for d in config["applications"][0]["deployments"] if d["name"] == "Gateway")
            gateway["ray_actor_options"]["runtime_env"] = {"env_vars": {"VOICE_OUTPUT_FRAME_MS": str(frame_ms)}}
            cluster.deploy(config)
            wait_ready(base)
            wait_health(base, "output_frame_ms", frame_ms)
            time.sleep(3.0)  # the old replica gone, the new one settled
            out = run_mode(base, url, args.calls, clips)
            print(
                f"[{frame_ms} ms] {out['wall_s']:.0f} s, Gateway {out['gateway_pct']:.1f} % "
                f"ProxyActor {out['proxy_pct']:.1f} % ({out['n_gateway']} and {out['n_proxy']} processes), "
                f"failures {out['failed']}",
                flush=True,
            )
            results.append((frame_ms, out))
    finally:
        serve.shutdown()
        ray.shutdown()

    print(
        f"\n{args.calls} calls talking; CPU in % of one core over the load; "
        "barge-in: caller's first interrupting sample to audio.clear, and agent audio that arrived meanwhile"
    )
    print(
        "frame ms  Gateway %  ProxyActor %  msgs per s of audio  clear ms (median, max)  late audio ms (median)  failed"
    )
    for frame_ms, o in results:
        clear, late = o["clear_ms"] or [float("nan")], o["late_audio_ms"] or [float("nan")]
        rate = o["frames"] / max(o["audio_s"], 1e-9)
        print(
            f"{frame_ms:>8}  {o['gateway_pct']:>9.1f}  {o['proxy_pct']:>12.1f}  {rate:>18.1f}  "
            f"{statistics.median(clear):>9.0f}, {max(clear):>6.0f}        {statistics.median(late):>10.0f}"
            f"              {len(o['failed'])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
