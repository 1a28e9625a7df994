"""What Langfuse tracing adds to a turn's orchestration time in the Gateway, tracing off against on,
same run, same turns.

    .venv/bin/python benchmarks/tracing_overhead.py [--turns 2000] [--rounds 5]

Tracing only adds the hooks the turn path calls (serve_app/tracing.py: `turn_started`,
`turn_recorded`, `turn_finished`): a turn's spans are built and handed to the SDK there, on the
call's event loop; the SDK exports them from its own thread. Each round runs the same turns (a
spoken turn with two tool calls, the OpenAI engine's model and tokens, a card number and an email
to mask) through the hooks of `NO_TRACE` and of a Langfuse `CallTrace` exporting to a local
stand-in (tests/fake_langfuse.py). Printed per turn: the hooks' wall time on the event loop
(median of rounds) before the first audio and at the turn's close (the spans are made on the
sink's own thread), and the process CPU per turn with span making, export and the call-end
flush counted. Compare with the turns' `orchestration_ms` in `turn.metrics` (tens of ms).
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

from models.session import TurnRecord  # noqa: E402
from serve_app.tracing import NO_TRACE, Tracing  # noqa: E402
from serve_app.tracing_langfuse import LangfuseSink  # noqa: E402
from tests.fake_langfuse import FakeLangfuse  # noqa: E402
from tests.test_tracing import METRICS, tool_turn  # noqa: E402


def record(turn_id: int) -> TurnRecord:
    """The unit tests' tool turn (two tool calls, the model's tokens, a card number and an email)."""
    return tool_turn()["record"].model_copy(update={"turn_id": turn_id})


def turns(trace, n: int, records: list[TurnRecord]) -> tuple[float, float]:
    """Seconds per turn the hooks take on the caller's event loop: those that can fall before
    the first audio (`turn_started`, `turn_recorded`), and the one at the turn's close."""
    early = close = 0.0
    for i in range(n):
        eos = time.monotonic() - 1.0
        t0 = time.perf_counter()
        trace.turn_started(i, eos, "speech")
        trace.turn_recorded(records[i], "my card is [CARD] and my email is [EMAIL]")
        t1 = time.perf_counter()
        trace.turn_finished(i, dict(METRICS), False)
        early, close = early + t1 - t0, close + time.perf_counter() - t1
    return early / n, close / n


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    records = [record(i) for i in range(args.turns)]
    off, on, cpu = [], [], []
    with FakeLangfuse() as server:
        tracing = Tracing(LangfuseSink("pk-bench", "sk-bench", server.url), "sk-bench")
        for _ in range(args.rounds):
            off.append(turns(NO_TRACE, args.turns, records))
            trace = tracing.call("bench-session", "caller-1")
            cpu0 = time.process_time()
            on.append(turns(trace, args.turns, records))
            await trace.end("hangup")  # the flush: every span made and exported
            cpu.append((time.process_time() - cpu0) / args.turns)
        spans = len(server.spans())
    us = lambda values: statistics.median(values) * 1e6  # noqa: E731
    print(f"turns per round: {args.turns}, rounds: {args.rounds}, spans received: {spans} (6 per turn, 1 per call)")
    print("per turn, median of rounds, on the event loop:   before first audio   at the turn's close")
    for label, runs in (("tracing off (NO_TRACE)", off), ("tracing on (Langfuse sink)", on)):
        print(f"  {label:<42}  {us([r[0] for r in runs]):10.1f} us {us([r[1] for r in runs]):14.1f} us")
    print(f"  tracing on: process CPU per turn, span making and export included: {us(cpu):.1f} us")


if __name__ == "__main__":
    asyncio.run(main())
