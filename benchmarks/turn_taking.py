"""End of turn and barge-in (issue 17), per endpoint mode, same run: false cuts, late endpoints,
voice-to-voice on complete sentences, and the time to stop the agent when the caller talks over it.

    flock /tmp/voice-platform.lock .venv/bin/python benchmarks/turn_taking.py \\
        [--modes fixed,adaptive] [--limit N] [--kinds complete,paused,digits] \\
        [--barge-ins 10] [--noises 3] [--json out.json]

Per mode (VOICE_TURN_END, handed to the platform through the environment it is deployed with) it
starts its own platform on a free port (fresh local Ray on loopback, its stores in a temporary
folder so both modes begin alike), then speaks the end-of-turn set (loadtests/turn_set.py; `--limit`
takes an even subset) at real time as demo-alice, one item at a time, with silence after each until
the agent has answered and gone back to listening (at least SETTLE_S after the last voiced sample,
past any endpoint the platform may choose). Digit items are said when the agent just asked for them
(a PIN on a fresh call, an order number on a verified one); a call that ended (an escalation, a
goodbye) or has taken `--items-per-call` items is replaced. Then the barge-ins: a typed question with
a long answer, and CUT_IN_S into its audio the caller says a complete sentence (`--barge-ins`), or a
noise burst or a backchannel (`--noises` each), which must not clear the agent's audio.

Scoring (benchmarks/turn_scoring.py, client clock): false cut, late (the client-seen endpoint,
`agent.state` thinking minus the last voiced sample, over 500 ms on a complete sentence; the
server's endpoint_delay_ms beside it), voice-to-voice P50/P95 on complete sentences not cut (last
voiced sample sent to first agent audio byte, as loadtests/latency.py), barge-in clear P50/P95
(first voiced sample of the speech over the agent to `audio.clear`). Each turn's `turn_end`,
`turn_end_confidence` and `endpoint_delay_ms` from `turn.metrics` are kept (absent before the
adaptive endpoint). The machine's other load shares these cores: compare modes of one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.turn_scoring import clear_ms, score_item, summarize, table  # noqa: E402
from common.audio import leading_silence_s  # noqa: E402
from loadtests.turn_set import TurnItem, backchannels, items, load_turn_set, noise_burst, rendered  # noqa: E402

CALLER, PIN = "demo-alice", "1234"  # the seeded demo customer (deployments/tools/support_store.py)
ASK_DIGITS = "where is my order"  # unverified: the agent asks for the PIN; verified: about an order
LONG_ANSWER = "how long is the warranty and what does it cover"
SETTLE_S = 2.5  # after the last voiced sample: beyond the longest endpoint (VOICE_TURN_END_MAX_MS 1500)
CUT_IN_S = 0.5  # reply audio heard before the caller talks over it
QUIET_S = 0.7  # silence between items, so turn.metrics (sent at the reply's end) arrives
PLATFORM_ENV = {
    "VOICE_CALLS_PER_MINUTE_PER_CALLER": "100000",  # one caller id dials many calls here
    "VOICE_CALLS_PER_MINUTE_PER_ADDRESS": "100000",
    "VOICE_PIN_MAX_FAILURES": "1000",  # a PIN cut in two is a wrong PIN: no lockout mid-benchmark
    "VOICE_IDLE_CHECKIN_S": "120",
}


def _state(client, mark: int = 0) -> str | None:
    states = [e["state"] for e in client.events[mark:] if e["type"] == "agent.state"]
    return states[-1] if states else None


class Line:
    """The benchmark's caller: one call kept usable across items, replaced when it ends."""

    def __init__(self, url: str, items_per_call: int):
        self.url, self.items_per_call = url, items_per_call
        self.client, self.said, self.verified, self.calls = None, 0, False, 0

    async def fresh(self, verified: bool) -> None:
        from serve_app.call import CallClient

        await self.close()
        client = CallClient(self.url, CALLER, resume_for=0)
        await client.connect(60)
        await client.silence_until(lambda: _state(client) == "listening" or client.closed, 60)
        self.client, self.said, self.verified, self.calls = client, 0, False, self.calls + 1
        if verified:
            await self.typed(ASK_DIGITS)
            await self.typed(PIN)
            self.verified = True

    async def typed(self, text: str) -> None:
        c, mark = self.client, len(self.client.events)
        await c.send_json({"type": "text", "text": text})
        await c.silence_until(lambda: c.agent_idle_since(mark) or c.closed, 30)
        await c.silence_until(lambda: c.closed, QUIET_S)

    def usable(self) -> bool:
        c = self.client
        return c is not None and not c.closed and not c.of_type("session.ended") and self.said < self.items_per_call

    async def ready_for(self, setup: str | None) -> None:
        if setup == "pin":
            await self.fresh(verified=False)
            await self.typed(ASK_DIGITS)
        elif setup == "order":
            if not (self.usable() and self.verified):
                await self.fresh(verified=True)
            await self.typed(ASK_DIGITS)
        elif not self.usable():
            await self.fresh(verified=True)

    async def say(self, item: TurnItem) -> dict:
        await self.ready_for(item.setup)
        c = self.client
        mark, frames = len(c.events), len(c.audio_frames)
        speech_end = await c.stream(item.pcm)
        last_voiced = speech_end - (item.duration_s - item.last_voiced_s)  # loadtests/latency.py's clock
        clip_start = last_voiced - item.last_voiced_s
        await self._settle(mark, last_voiced + SETTLE_S)
        self.said += 1
        events = c.events[mark:]
        row = score_item(events, [at for at, _ in c.audio_frames[frames:] if at >= clip_start], last_voiced)
        described = ("kind", "text", "voice", "length_scale", "pause_s", "pauses", "setup")
        row.update({k: getattr(item, k) for k in described})
        row["heard"] = [e["text"] for e in events if e["type"] == "transcript" and e.get("final")]
        row["agent"] = [e["text"] for e in events if e["type"] == "agent.text"][:2]
        return row

    async def barge(self, kind: str, pcm: bytes, label: str) -> dict:
        """Ask for a long answer, talk over it CUT_IN_S into its audio; whether and when it cleared."""
        await self.ready_for(None)
        c = self.client
        mark, sent = len(c.events), time.monotonic()
        await c.send_json({"type": "text", "text": LONG_ANSWER})
        await c.silence_until(lambda: (c.audio_frames and c.audio_frames[-1][0] >= sent) or c.closed, 30)
        await c.silence_until(lambda: c.closed, CUT_IN_S)
        if _state(c, mark) != "speaking":
            self.said += 1
            why = f"agent {_state(c, mark)} {time.monotonic() - sent:.1f} s after the question"
            return {"kind": kind, "said": label, "clear_ms": None, "skipped": why}
        mark = len(c.events)
        start = time.monotonic()
        speech_end = await c.stream(pcm)
        await self._settle(mark, speech_end + SETTLE_S)
        self.said += 1
        heard = [e["text"] for e in c.events[mark:] if e["type"] == "transcript" and e.get("final")]
        return {
            "kind": kind,
            "said": label,
            "clear_ms": clear_ms(c.events[mark:], start + leading_silence_s(pcm)),
            "heard": heard,
        }

    async def _settle(self, mark: int, not_before: float) -> None:
        """Silence until the agent is back to listening (or never took a turn) after `not_before`."""
        c = self.client

        def settled() -> bool:
            return c.closed or (time.monotonic() >= not_before and _state(c, mark) in (None, "listening"))

        await c.silence_until(settled, 60)
        await c.silence_until(lambda: c.closed, QUIET_S)

    async def close(self) -> None:
        if self.client is not None:
            try:
                await self.client.hangup()
            except Exception:
                pass  # ended already
            await self.client.close()
            self.client = None


async def run_mode(url: str, turn_set: list[TurnItem], barges: list[tuple[str, bytes, str]], args) -> tuple:
    line, rows, barge_rows, errors = Line(url, args.items_per_call), [], [], []
    try:
        for item in turn_set:
            try:
                row = await line.say(item)
            except Exception as exc:  # a refused or broken call: noted, and the next item gets a new one
                print(f"  {item.kind:<8} ERROR {exc!r}  {item.written!r}", flush=True)
                errors.append({"kind": item.kind, "text": item.text, "error": repr(exc)})
                await line.close()
                continue
            rows.append(row)
            flags = "CUT " if row["false_cut"] else "LATE" if row["late"] else "ok  "
            decided = ",".join(str(m.get("turn_end", "-")) for m in row["turn_metrics"]) or "-"
            print(
                f"  {row['kind']:<8} {flags} endpoint {row['endpoint_ms']} v2v {row['v2v_ms']} ms  turn_end {decided}  "
                f"{item.written!r} -> {row['heard']}",
                flush=True,
            )
        for kind, pcm, label in barges:
            try:
                b = await line.barge(kind, pcm, label)
            except Exception as exc:
                b = {"kind": kind, "said": label, "clear_ms": None, "skipped": repr(exc)}
                await line.close()
            barge_rows.append(b)
            print(f"  barge-in {kind:<11} clear {b['clear_ms']} ms  {label!r} {b.get('skipped', '')}", flush=True)
    finally:
        await line.close()
    return rows, barge_rows, errors, line.calls


@contextmanager
def platform(mode: str):
    """The platform on a fresh local Ray with VOICE_TURN_END=mode; yields its /ws/call URL."""
    from loadtests.latency import _free_port, start_ray, stop_ray, wait_ready
    from serve_app import cluster

    with tempfile.TemporaryDirectory(prefix=f"turn-taking-{mode}-") as folder:
        env = {**PLATFORM_ENV, "VOICE_TURN_END": mode}
        env.update(VOICE_STORE_PATH=f"{folder}/sessions.db", VOICE_SUPPORT_DB_PATH=f"{folder}/support.db")
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        port, t0 = _free_port(), time.monotonic()
        start_ray()
        try:
            cluster.deploy(cluster.load_config(http_port=port, env=cluster.settings_env()))
            wait_ready(f"http://127.0.0.1:{port}", timeout=300)
            print(f"[{mode}] platform ready in {time.monotonic() - t0:.0f} s on port {port}", flush=True)
            yield f"ws://127.0.0.1:{port}/ws/call"
        finally:
            stop_ray()
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def barge_clips(n_speech: int, n_noise: int) -> list[tuple[str, bytes, str]]:
    """Complete sentences of over a second to talk over the agent with, then noise bursts and
    backchannels (alternating) that must not stop it."""
    long_ones = rendered([i for i in items() if i.kind == "complete" and len(i.text.split()) >= 6][:n_speech])
    clips = [("speech", i.pcm, i.text) for i in long_ones]
    said = backchannels()
    for k in range(n_noise):
        clips.append(("noise", noise_burst(0.25 + 0.15 * k, seed=k), f"noise burst {0.25 + 0.15 * k:.2f} s"))
        clips.append(("backchannel", said[k % len(said)].pcm, said[k % len(said)].text))
    return clips


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default="fixed,adaptive", help="VOICE_TURN_END values, in order (baseline first)")
    p.add_argument("--limit", type=int, default=None, help="an even subset of the set, this many items")
    p.add_argument("--kinds", default="complete,paused,digits", help="which kinds of item to say (a diagnosis)")
    p.add_argument("--barge-ins", type=int, default=10, help="barge-ins with real speech per mode")
    p.add_argument("--noises", type=int, default=3, help="noise bursts and as many backchannels over the agent")
    p.add_argument("--items-per-call", type=int, default=12, help="items said on one call before a new one")
    p.add_argument("--json", type=Path, default=None, help="write every figure and item here")
    args = p.parse_args(argv)

    kinds = set(args.kinds.split(","))
    # rendered before a platform competes for the CPU
    turn_set = [item for item in load_turn_set(args.limit) if item.kind in kinds]
    barges = barge_clips(args.barge_ins, args.noises)
    summaries, detail = [], {}
    for mode in args.modes.split(","):
        with platform(mode) as url:
            print(f"[{mode}] {len(turn_set)} items, {len(barges)} barge-ins", flush=True)
            rows, barge_rows, errors, calls = asyncio.run(run_mode(url, turn_set, barges, args))
        summaries.append({**summarize(mode, rows, barge_rows), "calls": calls, "errors": len(errors)})
        detail[mode] = {"items": rows, "barge_ins": barge_rows, "errors": errors}
    print()
    print(table(summaries))
    print("(late: client-seen endpoint over 500 ms on a complete sentence; endpoint/server: P50 ms, client/VAD)")
    if args.json:
        config = {
            "limit": args.limit,
            "kinds": args.kinds,
            "modes": args.modes,
            "barge_ins": args.barge_ins,
            "noises": args.noises,
        }
        args.json.write_text(json.dumps({"config": config, "summaries": summaries, "detail": detail}, indent=1))
        print(f"figures: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
