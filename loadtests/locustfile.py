"""Locust callers that talk like people: real speech at real time, pauses, typing, barging in.

    .venv/bin/locust -f loadtests/locustfile.py --headless -u 4 -r 1 -t 60s --stop-timeout 30 --host ws://127.0.0.1:8000

Each user makes calls one after another. A call dials, waits for the greeting, then takes
`LOADTEST_TURNS` (4) turns in random order, each kind at least once: a spoken question
(loadtests/utterances.py: piper at several speeds, some with a pause in mid-sentence), a typed
turn, and a barge-in (the caller talks over a reply while its audio arrives). Reported per
request name, all in ms:

- `setup`: dialling to the greeting's first audio byte (a failure: refused, or no greeting);
- `voice turn`: voice-to-voice, the last voiced sample sent to the first agent audio byte
  received (a barge-in's own words are a voice turn too);
- `typed turn`: the text message sent to the first agent audio byte;
- `barge-in stop`: the caller's first voiced sample to `audio.clear`; a failure when the reply
  played on, or any of its audio arrived after the clear. A reply that ended by itself before
  the caller cut in is not counted.
"""

from __future__ import annotations

import os
import random
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's code, whichever one the venv was installed from

from locust import User, between, events, task  # noqa: E402

from loadtests.caller import Call, NotABargeIn, TurnFailed  # noqa: E402
from loadtests.utterances import TYPED_TURNS, load_utterances  # noqa: E402

TURNS = int(os.environ.get("LOADTEST_TURNS", "4"))
KINDS = ("voice turn", "typed turn", "barge-in stop")
_utterances: list = []


def report(name: str, ms: float, exc: Exception | None = None) -> None:
    events.request.fire(request_type="WS", name=name, response_time=ms, response_length=0, exception=exc, context={})


@events.init.add_listener
def _synthesize(**_kw) -> None:
    """Speech is made (or read from the cache) once, before any user starts."""
    _utterances.extend(load_utterances())


class Caller(User):
    wait_time = between(1, 3)

    @task
    def call(self) -> None:
        line = Call(f"{self.host.rstrip('/')}/ws/call?caller_id=load-{uuid.uuid4().hex[:8]}&sample_rate=16000")
        t0 = time.monotonic()
        try:
            report("setup", line.connect())
        except TurnFailed as exc:
            report("setup", (time.monotonic() - t0) * 1000, exc)
            line.hangup()
            return
        plan = list(KINDS) + random.choices(("voice turn", "voice turn", "typed turn", "barge-in stop"), k=TURNS - 3)
        random.shuffle(plan)
        try:
            for kind in plan[:TURNS]:
                line.pause(random.uniform(0.3, 1.2))
                self._turn(line, kind)
                if line.closed:
                    break
        finally:
            line.hangup()

    def _turn(self, line: Call, kind: str) -> None:
        t0 = time.monotonic()
        try:
            if kind == "voice turn":
                report(kind, line.voice_turn(random.choice(_utterances).pcm))
            elif kind == "typed turn":
                report(kind, line.typed_turn(random.choice(TYPED_TURNS)))
            else:
                stop_ms, answer = line.barge_in(random.choice(TYPED_TURNS), random.choice(_utterances).pcm)
                report(kind, stop_ms)
                failed = isinstance(answer, TurnFailed)
                report("voice turn", (time.monotonic() - t0) * 1000 if failed else answer, answer if failed else None)
        except NotABargeIn:
            pass
        except TurnFailed as exc:
            report(kind, (time.monotonic() - t0) * 1000, exc)
