"""Calls and turns lost while the Gateway is redeployed under live, talking calls.

    .venv/bin/python benchmarks/redeploy.py [--calls 4] [--turns 12]

Starts its own local Ray (loopback) and the platform from serve_config.yaml on a free port.
Each call takes typed turns back to back (a turn is sent when the previous answer has been
spoken); after a few turns the Gateway is redeployed as a new version (its replicas replaced),
which drains every live call onto the new replica. Printed: calls lost (ended other than by our
hang-up), turns lost (sent and never answered, or recorded twice), each call's time away (from
`session.ended` `draining` to the resumed `session.started`), and the turn answer time during the
redeploy beside the same calls' answer time before it (the baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.local_platform import local_platform  # noqa: E402

QUESTIONS = ["what are your opening hours", "where are you located", "how do returns work", "thanks"]


async def talk(url: str, caller: str, turns: int, redeploying: threading.Event, answered: dict) -> dict:
    from serve_app.call import CallClient

    client = CallClient(url, caller)
    await client.connect()
    await client.wait_for(lambda: any(e.get("state") == "listening" for e in client.events), 60)
    before, during, unanswered = [], [], 0
    answered[caller] = before
    for i in range(turns):
        mark = len(client.events)
        t0 = time.monotonic()
        await client.send_json({"type": "text", "text": QUESTIONS[i % len(QUESTIONS)]})
        try:
            await client.wait_for(lambda mark=mark: client.agent_idle_since(mark), 90)
        except TimeoutError:
            unanswered += 1
            continue
        answered = any(e["type"] == "agent.text" for e in client.events[mark:])
        unanswered += not answered
        (during if redeploying.is_set() else before).append(time.monotonic() - t0)
    ended = [e["reason"] for e in client.of_type("session.ended")]
    away = _away(client.events)
    await client.hangup()
    await client.close()
    return {
        "session_id": client.session["session_id"],
        "lost": client.closed and "hangup" not in ended and ended[-1:] != ["draining"],
        "ended": ended,
        "unanswered": unanswered,
        "before": before,
        "during": during,
        "away": away,
        "resumes": client.resumes,
    }


def _away(events: list[dict]) -> list[float]:
    """Seconds from each `draining` to the next resumed session.started."""
    out, drained_at = [], None
    for e in events:
        if e["type"] == "session.ended" and e.get("reason") == "draining":
            drained_at = e["_at"]
        elif e["type"] == "session.started" and e.get("resumed") and drained_at is not None:
            out.append(e["_at"] - drained_at)
            drained_at = None
    return out


def new_version(config: dict) -> dict:
    """The same application with the Gateway's actor options changed: Serve replaces its replicas."""
    config = copy.deepcopy(config)
    gateway = next(d for d in config["applications"][0]["deployments"] if d["name"] == "Gateway")
    options = gateway.setdefault("ray_actor_options", {})
    options["num_cpus"] = round(options.get("num_cpus", 0.25) - 0.01, 2)
    return config


async def run(url: str, config: dict, calls: int, turns: int) -> list[dict]:
    from serve_app import cluster

    redeploying = threading.Event()
    answered: dict[str, list] = {}
    talking = [asyncio.create_task(talk(url, f"redeploy-{i}", turns, redeploying, answered)) for i in range(calls)]
    while len(answered) < calls or min(len(v) for v in answered.values()) < 3:  # a few turns each first
        await asyncio.sleep(0.2)
    redeploying.set()
    t0 = time.monotonic()
    await asyncio.to_thread(cluster.deploy, new_version(config))
    print(f"redeploy done in {time.monotonic() - t0:.1f} s")
    return await asyncio.gather(*talking)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=4)
    p.add_argument("--turns", type=int, default=12)
    args = p.parse_args()
    from common.config import get_settings
    from deployments.session.store import SessionStore

    with local_platform() as (port, config):
        rows = asyncio.run(run(f"ws://127.0.0.1:{port}/ws/call", config, args.calls, args.turns))
        store = SessionStore(get_settings().store_path)
        recorded = [[t.transcript for t in store.load(r["session_id"]).turns if t.source == "text"] for r in rows]
    twice = sum(max(0, len(texts) - args.turns) for texts in recorded)
    missing = sum(max(0, args.turns - len(texts)) for texts in recorded)
    before = [x for r in rows for x in r["before"]]
    during = [x for r in rows for x in r["during"]]
    away = [x for r in rows for x in r["away"]]
    print(f"{args.calls} calls x {args.turns} typed turns, Gateway redeployed mid-call")
    moved = sum(r["resumes"] for r in rows)
    print(f"calls lost                  {sum(r['lost'] for r in rows)}   (moves to the new replica: {moved})")
    unanswered = sum(r["unanswered"] for r in rows)
    lost = unanswered + missing
    print(f"turns lost                  {lost}   (unanswered {unanswered}, unrecorded {missing}, twice {twice})")
    if away:
        print(f"time away per move (median) {statistics.median(away) * 1000:6.0f} ms   (max {max(away) * 1000:.0f})")
    if before and during:
        print(
            f"turn answered, median      {statistics.median(during) * 1000:6.0f} ms during the redeploy"
            f"   (before it: {statistics.median(before) * 1000:.0f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
