"""Checkpoint time per turn, and the workflow journal's cost per side-effecting tool call, on
SQLite and on Redis (a real redis-server on loopback, started here), same run.

    .venv/bin/python benchmarks/checkpoint.py [--turns 20] [--calls 50]

Each save is what a session actor does at a turn's record and at its close: the whole state
(turns so far, masked) under the revision check. Each journaled call is what the tool router
adds around `create_return`: the key claimed pending before the call, marked done with the
result after it. Prints the median and P95 of each and the state's size at the last turn.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deployments.session.redis_store import RedisSessionStore  # noqa: E402
from deployments.session.store import SessionStore  # noqa: E402
from deployments.state import redis_state, sqlite_state  # noqa: E402
from deployments.tools.router import per_turn  # noqa: E402
from models.state import SessionState, TurnState  # noqa: E402
from tests.redis_server import redis_server  # noqa: E402


def run(store, calls: int, turns: int) -> tuple[list[float], int]:
    times, size = [], 0
    for c in range(calls):
        state = SessionState(session_id=f"bench-{c}", caller_id="caller-1")
        for t in range(turns):
            state.turns.append(
                TurnState(
                    turn_id=t,
                    transcript="I'd like to return the rain jacket from order [ORDER], it doesn't fit",
                    reply=["I can help with that.", "Which item from the order would you like to return?"],
                    metrics={"eos_to_first_audio_ms": 512.0, "dialogue_first_sentence_ms": 48.0},
                )
            )
            t0 = time.perf_counter()
            store.save(state)
            times.append((time.perf_counter() - t0) * 1000)
        size = len(state.model_dump_json())
    return times, size


def journal(workflow, calls: int, turns: int) -> list[float]:
    """Pending then done, once per side-effecting call (a create_return per turn, worst case)."""
    times = []
    result = {"ok": True, "output": {"return_id": "R10042-1A2B", "order_id": "10042"}}
    for c in range(calls):
        for t in range(turns):
            key = "create_return:" + per_turn(f"bench-{c}", t, {"order_id": "10042", "reason": "too small"})
            t0 = time.perf_counter()
            assert workflow.begin(key) is None
            workflow.finish(key, result)
            times.append((time.perf_counter() - t0) * 1000)
    return times


def summary(times: list[float]) -> str:
    return f"median {statistics.median(times):.2f} ms  P95 {statistics.quantiles(times, n=20)[-1]:.2f} ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--calls", type=int, default=50)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, redis_server(tmp) as url:
        backends = [
            ("sqlite", SessionStore(Path(tmp) / "sessions.db"), sqlite_state(Path(tmp) / "state.db")),
            ("redis", RedisSessionStore(url), redis_state(url)),
        ]
        print(f"{args.calls} calls x {args.turns} turns, one save and one journaled side effect per turn")
        for name, store, state in backends:
            times, size = run(store, args.calls, args.turns)
            print(f"{name:<7} checkpoint {summary(times)}  (last state {size / 1024:.1f} KiB)")
            print(f"{name:<7} journal pending+done {summary(journal(state.workflow, args.calls, args.turns))}")
            store.close()
            state.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
