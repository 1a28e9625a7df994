"""Capacity across the cluster: a full Gateway replica never refuses a call another has room for.

Serve's router sends a new connection to the less busy of two replicas, which is usually one
with room, but not always (a stale queue length, three or more replicas). So each replica
reports its lines to one ledger actor (named, shared cluster-wide, like the breaker actor), and
a full replica asks it before refusing: another replica with room means HTTP 503 with
`Retry-After: 0` before the handshake (the client dials again and is routed afresh); only when
every replica is full does the caller get `at_capacity` and close 1013.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import ray

from common.logs import mask_logs_in_this_process
from serve_app.admission import Admission, CallRates

log = logging.getLogger(__name__)

LEDGER_NAME = "voice-capacity"
FRESH_S = 5.0  # a replica silent this long is gone (died, or stopped): its room does not count


@dataclass
class Lines:
    active: int
    capacity: int
    draining: bool
    at: float


class Ledger:
    """Pure: the replicas' last reports, and whether one other than the asker has room."""

    def __init__(self, clock=time.monotonic):
        self._lines: dict[str, Lines] = {}
        self._clock = clock

    def report(self, replica: str, active: int, capacity: int, draining: bool) -> None:
        self._lines[replica] = Lines(active, capacity, draining, self._clock())

    def forget(self, replica: str) -> None:
        self._lines.pop(replica, None)

    def room_elsewhere(self, replica: str) -> bool:
        now = self._clock()
        for name, lines in list(self._lines.items()):
            if now - lines.at > FRESH_S:
                del self._lines[name]
            elif name != replica and not lines.draining and lines.active < lines.capacity:
                return True
        return False

    def snapshot(self) -> dict[str, dict]:
        return {name: vars(lines) for name, lines in self._lines.items()}


@ray.remote(num_cpus=0)
class LedgerActor(Ledger):
    """Also the cluster's count of new calls per caller and per address (the 429 limits)."""

    def __init__(self):
        mask_logs_in_this_process()
        super().__init__()
        self._rates = CallRates(1, 1)

    def admit(
        self, address: str | None, caller_id: str | None, per_caller: int, per_address: int
    ) -> tuple[int, str] | None:
        return self._rates.admit(address, caller_id, per_caller, per_address)


def ledger_actor():
    """The cluster's one ledger: created by the first replica to ask, found by the others."""
    return LedgerActor.options(name=LEDGER_NAME, namespace="voice", get_if_exists=True, lifetime="detached").remote()


class CapacityReporter:
    """A replica's side: a report on every change (unawaited) and every second, so the ledger
    forgets a replica that stopped; `room_elsewhere` asks within a short deadline."""

    def __init__(self, ledger, replica: str, lines, every_s: float = 1.0):
        self._ledger, self.replica, self._lines, self._every_s = ledger, replica, lines, every_s
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._beat())

    def report(self) -> None:
        active, capacity, draining = self._lines()
        try:
            self._ledger.report.remote(self.replica, active, capacity, draining)
        except Exception as exc:
            log.debug("capacity report not sent: %r", exc)

    async def _beat(self) -> None:
        while True:
            self.report()
            await asyncio.sleep(self._every_s)

    async def admit(self, door: Admission, address: str | None, caller_id: str | None) -> tuple[int, str] | None:
        """The cluster-wide 429 check; the replica's own count if the ledger does not answer."""
        limits = (door.rates.callers.limit, door.rates.addresses.limit)
        try:
            return await asyncio.wait_for(self._ledger.admit.remote(address, caller_id, *limits), timeout=1.0)
        except Exception as exc:
            log.warning("capacity ledger did not answer, counting calls on this replica: %r", exc)
            return door.rates.admit(address, caller_id)

    async def room_elsewhere(self) -> bool:
        try:
            return await asyncio.wait_for(self._ledger.room_elsewhere.remote(self.replica), timeout=1.0)
        except Exception as exc:  # no answer: refuse here, as a single replica would
            log.warning("capacity ledger did not answer: %r", exc)
            return False
