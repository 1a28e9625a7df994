"""ASR batched across calls against one by one, and partials shed against partials decoded.

    .venv/bin/python benchmarks/asr_batch.py [--callers 1 4 8] [--rounds 6] [--partials 4]

Starts its own local Ray with two ASR deployments side by side, the same code with
VOICE_ASR_BATCH_MAX=1 (one utterance per `generate`, what the replica did before) and with the
configured batch (VOICE_ASR_BATCH_MAX, default 4); they are measured in turn, never at once. K
callers each send utterances of piper speech (lengths printed) back to back, one in flight each;
printed per mode and K: per-request latency P50/P95, throughput, and the batch sizes the replica
ran. `--partials K` then runs K callers whose turns each come with a partial every 250 ms of the
turn (one in flight per caller, as the Gateway sends them), first sent as turn work (what every
request was before: nothing shed) and then as partials, and prints the turns' latency beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtests.latency import UTTERANCES  # noqa: E402

LINES = [  # the latency benchmark's questions and longer turns
    *UTTERANCES,
    "I want to return an item because it arrived damaged last week.",
    "My order number is one two three four five, when will it arrive?",
]


def deploy(batch_max: int):
    from ray import serve

    from deployments.asr.deployment import ASR

    env = {"VOICE_ASR_BATCH_MAX": str(batch_max), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    app = ASR.options(ray_actor_options={"num_cpus": 0.5, "runtime_env": {"env_vars": env}}).bind()
    return serve.run(app, name=f"asr-batch-{batch_max}", route_prefix=None)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def callers(handle, audio: list[bytes], k: int, rounds: int, partial_kind: str | None) -> dict:
    """K callers, `rounds` turns each back to back; with `partial_kind`, partials beside each turn."""
    from models.asr import AsrRequest

    latencies, partials = [], {"sent": 0, "decoded": 0}

    async def partial_stream(pcm: bytes, call_id: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            partials["sent"] += 1
            try:
                await handle.transcribe.remote(AsrRequest(pcm16=pcm, kind=partial_kind, call_id=call_id))
                partials["decoded"] += 1
            except Exception:
                pass  # shed
            try:
                await asyncio.wait_for(stop.wait(), 0.25)
            except TimeoutError:
                pass

    async def caller(c: int) -> None:
        for r in range(rounds):
            pcm = audio[(c + r) % len(audio)]
            stop = asyncio.Event()
            side = asyncio.create_task(partial_stream(pcm, f"c{c}", stop)) if partial_kind else None
            t0 = time.perf_counter()
            await handle.transcribe.remote(AsrRequest(pcm16=pcm, call_id=f"c{c}"))
            latencies.append((time.perf_counter() - t0) * 1000)
            stop.set()
            if side:
                await side

    before = await handle.stats.remote()
    t0 = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(k)))
    wall = time.perf_counter() - t0
    after = await handle.stats.remote()
    grown = {s: n - before["batches"].get(s, 0) for s, n in sorted(after["batches"].items())}
    batches = {s: n for s, n in grown.items() if n}
    return {"lat": latencies, "rps": len(latencies) / wall, "batches": batches, **partials}


def row(label: str, k: int, m: dict) -> str:
    lat = m["lat"]
    extra = f"  partials decoded {m['decoded']}/{m['sent']}" if m["sent"] else ""
    return (
        f"{label:<22} K={k:<2} n={len(lat):<3} P50 {pct(lat, 50):6.0f} ms  P95 {pct(lat, 95):6.0f} ms  "
        f"{m['rps']:5.2f} req/s  batches {m['batches']}{extra}"
    )


async def run(args, audio: list[bytes], single, batched, batch_max: int) -> None:
    for handle in (single, batched):  # warm: the first requests pay for threads and allocations
        await callers(handle, audio, 2, 1, None)
    print(f"{len(audio)} utterances of {min(map(len, audio)) / 32000:.1f} to {max(map(len, audio)) / 32000:.1f} s")
    for k in args.callers:
        for label, handle in (("one by one", single), (f"batched (max {batch_max})", batched)):
            print(row(label, k, await callers(handle, audio, k, args.rounds, None)), flush=True)
    if args.partials:
        k = args.partials
        for label, kind in (("partials as turn work", "final"), ("partials shed", "partial")):
            print(row(label, k, await callers(batched, audio, k, args.rounds, kind)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--rounds", type=int, default=6, help="utterances per caller")
    parser.add_argument("--partials", type=int, default=4, help="callers in the partials run (0: none)")
    args = parser.parse_args()
    import ray
    from ray import serve

    from serve_app import cluster

    cluster.local_ray(4)
    try:
        from deployments.tts.engine import PiperEngine

        piper = PiperEngine()
        audio = [b"".join(piper.synthesize(line, 16000, deterministic=True)) for line in LINES]
        batch_max = int(os.environ.get("VOICE_ASR_BATCH_MAX", "4"))
        asyncio.run(run(args, audio, deploy(1), deploy(batch_max), batch_max))
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
