"""Which requests a loaded ASR replica decodes: a turn's audio always, a partial only when idle.

Partial transcripts re-decode the whole utterance so far, once a second per speaking caller:
under load they would take the CPU from the transcripts turns wait on. A partial is shed at the
door when turn work (a final or a run-ahead) is pending or the same call already has a partial
pending, and shed again when its batch comes if turn work is pending then or it has waited past
`max_wait_s` (a late partial is old news: the next one is a second away). Turn work is never shed.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from models.asr import AsrKind


@dataclass(frozen=True)
class Ticket:
    kind: AsrKind
    call_id: str
    admitted_at: float
    number: int


class AsrGate:
    def __init__(self, max_wait_s: float, clock: Callable[[], float] = time.monotonic):
        self._max_wait_s, self._clock = max_wait_s, clock
        self._turn_work = 0  # finals and run-aheads admitted and not yet answered
        self._partials: dict[str, int] = {}  # call -> the number of its pending partial
        self._numbers = itertools.count()
        self.shed = 0  # partials dropped so far, for the replica's log

    def admit(self, kind: AsrKind, call_id: str) -> Ticket | None:
        """A ticket for the request, or None: a partial shed at the door."""
        if kind == "partial":
            if self._turn_work or call_id in self._partials:
                self.shed += 1
                return None
        ticket = Ticket(kind, call_id, self._clock(), next(self._numbers))
        if kind == "partial":
            self._partials[call_id] = ticket.number
        else:
            self._turn_work += 1
        return ticket

    def keep(self, ticket: Ticket) -> bool:
        """Decode it now? Asked when its batch is about to run."""
        if ticket.kind != "partial":
            return True
        if self._turn_work or self._clock() - ticket.admitted_at > self._max_wait_s:
            self.shed += 1
            return False
        return True

    def done(self, ticket: Ticket) -> None:
        """Answered, shed or cancelled: the request no longer holds anything back."""
        if ticket.kind != "partial":
            self._turn_work -= 1
        elif self._partials.get(ticket.call_id) == ticket.number:
            del self._partials[ticket.call_id]
