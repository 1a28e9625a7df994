"""Capacity sweep: how many concurrent talking calls this machine carries, and what the CPU goes to.

    .venv/bin/python -m loadtests.sweep [--calls 1,2,4,8,12,16,20] [--turns 4] [--ramp-s 2]
        [--url ws://127.0.0.1:8000/ws/call] [--json sweep.json] [--png sweep.png]
    .venv/bin/python -m loadtests.sweep --soak 30 --calls 8

One asyncio process drives every caller (loadtests/callers.py); for each N of `--calls` it starts
N calls spread over `--ramp-s`, each taking `--turns` turns (spoken at real time in two voices and
three speeds, some with a pause, some typed, some barged in on: loadtests/utterances.py), waits
for all to hang up, and goes to the next N. Per N: voice-to-voice P50/P95 from the last voiced
sample, typed turns apart, connect-to-greeting P50/P95, failures, dropped and refused calls, CPU
per component and the platform's PSS (loadtests/procstats.py). `--soak MINUTES` keeps the one N
cycling calls for that long (a refused caller dials again 1.5 to 4.5 s later) and reports latency,
PSS and refusals per minute, with slopes per hour over the whole soak and after its warm-up.
Without `--url` it starts its own platform on a free port, as loadtests/latency.py does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests import sweep_report as report  # noqa: E402
from loadtests.callers import Options, plan_turns, run_call  # noqa: E402
from loadtests.procstats import ProcSampler  # noqa: E402
from loadtests.utterances import TYPED_TURNS, load_utterances  # noqa: E402

DEFAULT_CALLS = "1,2,4,8,12,16,20"
SETTLE_S = 3.0  # between levels: hung-up calls' actors gone, the warm pool refilled


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", default=DEFAULT_CALLS, help="concurrent calls per level, comma-separated")
    p.add_argument("--turns", type=int, default=4, help="turns per call (a barge-in turn is two questions)")
    p.add_argument("--ramp-s", type=float, default=2.0, help="a level's calls start spread over this long")
    p.add_argument("--url", help="a running platform's /ws/call (default: start one here on a free port)")
    p.add_argument("--soak", type=float, metavar="MINUTES", help="keep --calls N calls cycling this long")
    p.add_argument("--json", type=Path, help="write every figure here")
    p.add_argument("--png", type=Path, help="plot latency and CPU against calls here")
    p.add_argument("--seed", type=int, default=7, help="what each caller says and when")
    p.add_argument("--utterances", type=Path, help="cache of rendered utterances (default ~/.cache/...)")
    p.add_argument(
        "--procs",
        choices=("tree", "all"),
        help="processes sampled: this one's descendants (default with its own platform) or every Ray process",
    )
    args = p.parse_args(argv)
    args.levels = [int(x) for x in args.calls.split(",") if x.strip()]
    if not args.levels or min(args.levels) < 1:
        p.error("--calls needs one or more positive numbers")
    if args.soak is not None and len(args.levels) != 1:
        p.error("--soak takes one number of calls (--calls 8)")
    return args


class Driver:
    """Calls against one platform, each from a caller id of its own (the per-caller rate limit)."""

    def __init__(self, url: str, args: argparse.Namespace, spoken: list):
        self.url, self.args, self.spoken = url, args, spoken
        self.opts = Options(turns=args.turns)
        self.run_id = uuid.uuid4().hex[:6]
        self.count = 0

    async def call(self, index: int, delay: float = 0.0):
        await asyncio.sleep(delay)
        self.count += 1
        rng = random.Random(f"{self.args.seed}-{self.count}")
        kinds = plan_turns(index, self.args.turns)
        return await run_call(
            self.url, f"sweep-{self.run_id}-{self.count}", kinds, self.spoken, TYPED_TURNS, rng, self.opts
        )

    async def level(self, n: int):
        return await asyncio.gather(*(self.call(i, i * self.args.ramp_s / n) for i in range(n)))

    async def soak(self, n: int, until: float, done: list) -> None:
        async def cycle(i: int) -> None:
            await asyncio.sleep(i * self.args.ramp_s / n)
            while time.monotonic() < until:
                result = await self.call(i)
                done.append(result)
                if result.refused:  # as a caller told "busy" would: dial again a little later
                    await asyncio.sleep(REDIAL_S * (0.5 + random.random()))

        await asyncio.gather(*(cycle(i) for i in range(n)))


REDIAL_S = 3.0  # a refused soak caller dials again after 1.5 to 4.5 s, not at once


def run_sweep(driver: Driver, sampler: ProcSampler) -> dict:
    levels = []
    for n in driver.args.levels:
        t0 = time.monotonic()
        calls = asyncio.run(driver.level(n))
        t1 = time.monotonic()
        window = report.full_window(calls)
        full = sampler.between(*window) if window else []
        levels.append(report.summarize(n, calls, sampler.between(t0, t1), full))
        lv = levels[-1]
        print(
            f"[{n} calls] {t1 - t0:.0f} s: {lv['answered']}/{lv['turns']} turns answered, "
            f"v2v P50 {report.ms(lv['v2v_p50_ms'])} P95 {report.ms(lv['v2v_p95_ms'])} ms, "
            f"failures {lv['failure_kinds'] or 0}",
            flush=True,
        )
        settle(driver.url)
    return {"levels": levels, "pss_per_call_mb": report.per_call_mb(levels)}


def settle(url: str, timeout_s: float = 60.0) -> None:
    """Between levels: SETTLE_S, then until the Gateway reports its warm pool full again and is not
    shedding (its turn window has aged out), so each level meets the platform as it is at rest."""
    time.sleep(SETTLE_S)
    ready = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1).rsplit("/ws/", 1)[0] + "/ready"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(ready, timeout=5) as r:
                body = json.load(r)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        except (OSError, ValueError):
            return
        if body.get("warm_sessions", 0) >= body.get("warm_target", 0) and not body.get("shedding"):
            return
        time.sleep(0.5)


def run_soak(driver: Driver, sampler: ProcSampler) -> dict:
    n, minutes = driver.args.levels[0], driver.args.soak
    done: list = []
    t0 = time.monotonic()
    asyncio.run(driver.soak(n, t0 + minutes * 60, done))
    windows = report.soak_windows(done, sampler.samples, t0, max(1, math.ceil(minutes)))
    level = report.summarize(n, done, sampler.between(t0, time.monotonic()), [])
    settled = [w for w in windows if w["minute"] >= report.soak_warmup(minutes)]
    soak = {
        "calls": n,
        "minutes": minutes,
        "windows": windows,
        "slopes": report.soak_slopes(windows),
        "slopes_after_warmup": report.soak_slopes(settled) if len(settled) >= 2 else None,
    }
    return {"levels": [level], "soak": soak}


def own_platform() -> str:
    """Start the platform here, as loadtests/latency.py does; return its /ws/call URL."""
    from loadtests.latency import _free_port, start_ray, wait_ready
    from serve_app import cluster

    os.environ.setdefault("VOICE_IDLE_CHECKIN_S", "60")  # a level's slowest turn never meets a check-in
    os.environ.setdefault("VOICE_CALLS_PER_MINUTE_PER_ADDRESS", "100000")  # every caller here is 127.0.0.1
    port = _free_port()
    t0 = time.monotonic()
    start_ray()
    cluster.deploy(cluster.load_config(http_port=port, env=cluster.settings_env()))
    wait_ready(f"http://127.0.0.1:{port}")
    print(f"platform ready in {time.monotonic() - t0:.0f} s on port {port}", flush=True)
    return f"ws://127.0.0.1:{port}/ws/call"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spoken = load_utterances(args.utterances)  # rendered before a platform competes for the CPU
    url = args.url or own_platform()
    sampler = ProcSampler(own_tree=(args.procs or ("all" if args.url else "tree")) == "tree").start()
    try:
        driver = Driver(url, args, spoken)
        result = run_soak(driver, sampler) if args.soak else run_sweep(driver, sampler)
    finally:
        sampler.stop()
        if args.url is None:
            from loadtests.latency import stop_ray

            stop_ray()
    result["config"] = {"url": url, "turns": args.turns, "ramp_s": args.ramp_s, "seed": args.seed}
    result["config"]["env"] = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("VOICE_") and not any(w in k for w in ("KEY", "TOKEN", "SECRET"))
    }
    print()
    print(report.table(result["levels"]))
    if "soak" in result:
        soak = result["soak"]
        print(report.soak_table(soak["windows"], soak["slopes"], soak["slopes_after_warmup"]))
    if args.json:
        args.json.write_text(json.dumps(report.plain(result), indent=1))
        print(f"figures: {args.json}")
    if args.png and not args.soak:
        report.plot(result["levels"], args.png)
        print(f"plot: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
