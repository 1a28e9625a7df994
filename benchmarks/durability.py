"""Durability figures of one call, each beside its baseline measured in the same run:

- a session actor killed: from the kill to the next turn's answer (baseline: the same typed
  turn on a healthy call);
- a dropped socket: from the drop to the resumed `session.started` (baseline: a new call's
  connect to `session.started`).

    .venv/bin/python benchmarks/durability.py [--trials 5]

Starts its own local Ray (loopback) and the platform from serve_config.yaml on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.local_platform import local_platform  # noqa: E402


async def answered(client, text: str) -> float:
    """Seconds from sending a typed turn to the first agent.text of its answer."""
    mark = len(client.events)
    t0 = time.monotonic()
    await client.send_json({"type": "text", "text": text})
    await client.wait_for(lambda: any(e["type"] == "agent.text" for e in client.events[mark:]), 60)
    took = time.monotonic() - t0
    await client.wait_for(lambda: client.agent_idle_since(mark), 60)
    return took


async def trial(url: str, caller: str) -> dict:
    import ray

    from serve_app.call import CallClient
    from serve_app.session_api import session_actor

    t0 = time.monotonic()
    client = CallClient(url, caller)
    await client.connect()
    fresh_connect = time.monotonic() - t0
    await client.wait_for(lambda: any(e.get("state") == "listening" for e in client.events), 60)
    healthy = await answered(client, "what are your opening hours")
    ray.kill(session_actor(client.session["session_id"]).actor, no_restart=True)
    after_kill = await answered(client, "what are your opening hours")
    token = client.session["resume_token"]
    await client.close()  # the drop
    t0 = time.monotonic()
    back = CallClient(url, caller, resume=token)
    while True:  # the server notices the drop, then the held call can be resumed
        try:
            await back.connect()
            break
        except Exception:
            if time.monotonic() - t0 > 20:
                raise
            back = CallClient(url, caller, resume=token)
            await asyncio.sleep(0.05)
    resumed = time.monotonic() - t0
    await back.hangup()
    await back.close()
    return {"connect": fresh_connect, "healthy": healthy, "after_kill": after_kill, "resumed": resumed}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=5)
    args = p.parse_args()
    with local_platform() as (port, _):
        url = f"ws://127.0.0.1:{port}/ws/call"
        rows = [asyncio.run(trial(url, f"durability-{i}")) for i in range(args.trials)]
    med = {k: statistics.median(r[k] for r in rows) * 1000 for k in rows[0]}
    print(f"{args.trials} trials (medians, ms)")
    print(f"actor killed -> next turn answered   {med['after_kill']:7.0f}   (healthy call: {med['healthy']:.0f})")
    print(f"socket dropped -> resumed started    {med['resumed']:7.0f}   (new call's connect: {med['connect']:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
