"""Call setup under a burst: connect to the first greeting audio byte, N calls started S s apart.

    .venv/bin/python benchmarks/call_setup.py [--calls 8] [--gap 0.25] [--warm 2,8] [--baseline DIR]

Starts its own platform (benchmarks/local_platform.py). For each warm pool size in --warm the
Gateway alone is redeployed with VOICE_WARM_SESSIONS set to it, the pool is let fill, then the
calls dial S s apart; each waits for its greeting, speaks one question (piper, real time), waits
for the answer and hangs up, so later calls set up while earlier ones talk. Prints per pool
size P50/P95 of connect -> session.started and connect -> first greeting audio byte over the
calls admitted, and the calls refused (close 1013, with the reason).

--baseline DIR: first the same measurement on the code in DIR (a checkout of main, e.g.
`git archive main | tar -x -C DIR`), in a subprocess of its own platform, printed beside ours.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

QUESTION = "What are your opening hours?"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=8)
    p.add_argument("--gap", type=float, default=0.25, help="seconds between call starts")
    p.add_argument("--warm", default="2,8", help="VOICE_WARM_SESSIONS values to measure, comma-separated")
    p.add_argument("--baseline", type=Path, help="a checkout of the code to compare with (main)")
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, help=argparse.SUPPRESS)  # where a baseline run leaves its figures
    return p.parse_args(argv)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ready(base: str) -> dict:
    try:
        with urllib.request.urlopen(base + "/ready", timeout=5) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def use_warm(port: int, warm: int, timeout_s: float = 180) -> None:
    """The Gateway redeployed with this warm pool, which is full (five reads in a row)."""
    from serve_app import cluster

    config = cluster.load_config(http_port=port, env=cluster.settings_env())
    gateway = next(d for d in config["applications"][0]["deployments"] if d["name"] == "Gateway")
    env = {"VOICE_WARM_SESSIONS": str(warm), "VOICE_WARM_SESSIONS_MAX": str(max(warm, 8))}
    gateway["ray_actor_options"]["runtime_env"] = {"env_vars": env}
    cluster.deploy(config)
    deadline, streak = time.monotonic() + timeout_s, 0
    while streak < 5:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the warm pool never reached {warm}")
        try:
            body = ready(f"http://127.0.0.1:{port}")
            full = body["warm_sessions"] == warm and body.get("warm_target", warm) == warm
            streak = streak + 1 if full else 0
        except (OSError, ValueError, KeyError):
            streak = 0
        time.sleep(0.3)


async def one_call(url: str, caller: str, question: bytes) -> dict:
    from serve_app.call import CallClient, speak_turn

    client = CallClient(url, caller, resume_for=0)
    t0 = time.monotonic()
    try:
        await client.connect(timeout=60)
    except ConnectionError:
        ended = client.of_type("session.ended")
        why = ended[-1]["reason"] if ended else f"close {client.close_code}"
        return {"refused": why, "after_s": time.monotonic() - t0}
    started = time.monotonic() - t0
    await client.wait_for(lambda: client.audio_frames or client.closed, 60)
    greeting = client.audio_frames[0][0] - t0 if client.audio_frames else None
    turn = await speak_turn(client, question, "question", timeout=60)
    await client.hangup()
    return {"started_s": started, "greeting_s": greeting, "turn_ms": turn.latency_ms}


async def burst(url: str, calls: int, gap: float, question: bytes, tag: str) -> list[dict]:
    async def later(i: int) -> dict:
        await asyncio.sleep(i * gap)
        return await one_call(url, f"setup-{tag}-{i}", question)

    return await asyncio.gather(*(later(i) for i in range(calls)))


def summarize(rows: list[dict]) -> dict:
    admitted = [r for r in rows if "refused" not in r]
    ms = {k: [r[k] * 1000 for r in admitted if r.get(k) is not None] for k in ("started_s", "greeting_s")}
    refusals: dict[str, int] = {}
    for r in rows:
        if "refused" in r:
            refusals[r["refused"]] = refusals.get(r["refused"], 0) + 1
    return {
        "admitted": len(admitted),
        "refused": refusals,
        "refused_after_ms_max": max((r["after_s"] * 1000 for r in rows if "refused" in r), default=None),
        "started_p50": percentile(ms["started_s"], 0.5),
        "started_p95": percentile(ms["started_s"], 0.95),
        "greeting_p50": percentile(ms["greeting_s"], 0.5),
        "greeting_p95": percentile(ms["greeting_s"], 0.95),
        "turn_p50": percentile([r["turn_ms"] for r in admitted if r.get("turn_ms")], 0.5),
    }


def measure(args: argparse.Namespace) -> dict[int, dict]:
    from benchmarks.local_platform import local_platform
    from deployments.tts.engine import PiperEngine

    question = b"".join(PiperEngine().synthesize(QUESTION, 16000, deterministic=True))
    results = {}
    with local_platform() as (port, _config):
        code = "this branch" if "warm_target" in ready(f"http://127.0.0.1:{port}") else "main (no warm_target)"
        print(f"platform up on port {port}, Gateway code: {code}", flush=True)
        for warm in [int(w) for w in args.warm.split(",")]:
            use_warm(port, warm)
            time.sleep(3)  # the redeploy's own work settles
            rows = asyncio.run(burst(f"ws://127.0.0.1:{port}/ws/call", args.calls, args.gap, question, str(warm)))
            results[warm] = summarize(rows)
            print(f"warm {warm}: {results[warm]}", flush=True)
    return results


def baseline(args: argparse.Namespace) -> dict[int, dict]:
    """This script on the code in args.baseline, in a process (and platform) of its own."""
    script = args.baseline / "benchmarks" / Path(__file__).name
    if not script.exists():
        shutil.copy(__file__, script)
    out = Path(tempfile.mkdtemp()) / "baseline.json"
    cmd = [sys.executable, str(script), "--calls", str(args.calls), "--gap", str(args.gap), "--warm", args.warm]
    env = {**os.environ, "PYTHONPATH": str(args.baseline)}
    subprocess.run([*cmd, "--root", str(args.baseline), "--json", str(out)], cwd=args.baseline, env=env, check=True)
    return {int(k): v for k, v in json.loads(out.read_text()).items()}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    sys.path.insert(0, str(args.root))
    before = baseline(args) if args.baseline else {}
    after = measure(args)
    if args.json:
        args.json.write_text(json.dumps(after))
        return 0
    print(f"\n{args.calls} calls started {args.gap} s apart; connect -> session.started / first greeting audio, ms")
    print("| code | warm | admitted | refused | started P50 | started P95 | greeting P50 | greeting P95 | turn P50 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, results in (("main", before), ("branch", after)):
        for warm, r in results.items():
            refused = ", ".join(f"{n} {why}" for why, n in r["refused"].items()) or "0"
            cells = [r["started_p50"], r["started_p95"], r["greeting_p50"], r["greeting_p95"], r["turn_p50"]]
            print(f"| {name} | {warm} | {r['admitted']} | {refused} | " + " | ".join(_ms(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
