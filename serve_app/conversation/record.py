"""A turn's record with the session actor: its words and verdict when the reply stream ends
(however it ends), its close when its audio ends (metrics to the client and the stage
histograms; after a barge-in, what the caller heard)."""

from __future__ import annotations

from collections.abc import Callable

from models.dialogue import Sentence, TurnSummary
from models.protocol import event
from models.session import TurnFinish, TurnRecord, TurnRecorded
from serve_app.conversation.channel import Channel
from serve_app.conversation.session_client import SessionClient
from serve_app.conversation.turn_parts import ms_since, orchestration_ms
from serve_app.deadlines import Deadlines, items_within
from serve_app.tracing import NO_TRACE, CallTrace, NoTrace


class Record:
    def __init__(
        self,
        channel: Channel,
        session: SessionClient,
        deadlines: Deadlines,
        observe: Callable[[dict], None],
        on_awaiting: Callable[[str | None], None],
        trace: CallTrace | NoTrace = NO_TRACE,
    ):
        self._channel, self._session, self._dl = channel, session, deadlines
        self._observe = observe
        self.trace = trace  # the call's trace: fed each turn's record and metrics
        self._on_awaiting = on_awaiting  # what the agent now asks for (a PIN masks partials)

    async def record(self, record: TurnRecord) -> TurnRecorded | None:
        recorded = await self._session.record(record)
        if recorded is not None:
            self._on_awaiting(recorded.context.awaiting)
            if recorded.context.memory.get("consent") == "declined":  # no words of this call leave it
                record = record.model_copy(update={"transcript": "", "sentences": []})
                self.trace.turn_recorded(record, "")
            else:
                self.trace.turn_recorded(record, recorded.transcript)
        return recorded

    async def sentences(
        self,
        items,
        record: TurnRecord,
        metrics: dict | None = None,
        started: float = 0.0,
        deadline: float | None = None,
        head: Sentence | None = None,
    ):
        """The sentences of a Dialogue reply stream, each within the dialogue deadline; they
        and the closing summary go into `record`."""

        async def stream():
            if head is not None:
                yield head
            async for item in items_within(items, deadline or self._dl.dialogue_s, "dialogue"):
                yield item

        async for item in self.passing(record, stream()):
            if isinstance(item, Sentence):
                if metrics is not None and "dialogue_first_sentence_ms" not in metrics:
                    metrics["dialogue_first_sentence_ms"] = ms_since(started)
                    if item.engine_ms is not None:
                        metrics["dialogue_engine_ms"] = item.engine_ms
                record.sentences.append(item.text)
                yield item.text
            elif isinstance(item, TurnSummary):
                record.summary = item

    async def passing(self, record: TurnRecord, items):
        """`items` passed through (plain sentences are added to `record`); then `record` goes
        to the session actor: awaited when the stream ended or failed (what was said before a
        failure is kept), sent unawaited when the call is being torn down."""
        try:
            async for item in items:
                if isinstance(item, str):
                    record.sentences.append(item)
                yield item
        except Exception:
            await self.record(record)
            raise
        except BaseException:
            self._session.record_unawaited(record)
            raise
        await self.record(record)

    async def finish_turn(
        self, turn_id: int, metrics: dict | None, interrupted: bool = False, heard_part: list[str] | None = None
    ) -> None:
        if metrics and (orchestration := orchestration_ms(metrics)) is not None:
            metrics["orchestration_ms"] = orchestration
        if metrics is not None and self._session.restored:  # the first turn since a new actor took over
            self._session.restored = False
            metrics["restored"] = True
        numbers = {k: float(v) for k, v in (metrics or {}).items() if _is_number(v)}
        if metrics:
            await self._channel.send_text(event("turn.metrics", turn_id=turn_id, interrupted=interrupted, **metrics))
            self._observe(metrics)
        self.trace.turn_finished(turn_id, metrics, interrupted)
        finish = TurnFinish(turn_id=turn_id, metrics=numbers, interrupted=interrupted, heard=heard_part)
        await self._session.finish_turn(finish)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
