"""Turns: the queue of what the caller (or the session API, or the idle timer) asked for, one
worker taking them in order, the transcript (from the run-ahead when it had one), the reply
streamed from the Dialogue, and each turn's record with the session actor."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from deployments.session.engine import MAX_TURNS_GOODBYE, masked_transcript
from models.dialogue import TurnSummary
from models.protocol import ProtocolError, event
from models.session import TurnRecord
from serve_app.conversation.ahead import AheadRunner
from serve_app.conversation.channel import Channel
from serve_app.conversation.guards import cancelling
from serve_app.conversation.listener import Listener
from serve_app.conversation.playback import is_backchannel
from serve_app.conversation.record import Record
from serve_app.conversation.session_client import SessionClient
from serve_app.conversation.speaker import Speaker
from serve_app.conversation.turn_parts import Ahead, TurnInput, aiter_of, discard_ahead, ms_since
from serve_app.deadlines import Deadlines, next_item, within

log = logging.getLogger(__name__)

SORRY_ASR = "Sorry, I couldn't hear that clearly. Could you say it again?"
SORRY_DIALOGUE = "Sorry, something went wrong on my side. Could you say that again?"
FALLBACK_GREETING = "Hello, thanks for calling. How can I help you today?"


class Turns:
    def __init__(
        self,
        channel: Channel,
        listener: Listener,
        speaker: Speaker,
        ahead: AheadRunner,
        record: Record,
        session: SessionClient,
        deadlines: Deadlines,
        turn_timeout_s: float,
        finish: Callable[[str], None],
    ):
        self._channel, self._listener, self._speaker, self.ahead = channel, listener, speaker, ahead
        self._record, self.session, self.session_id, self._dl = record, session, session.session_id, deadlines
        self._turn_timeout_s = turn_timeout_s
        self._finish = finish  # ends the call with a reason
        self.queue: asyncio.Queue[TurnInput] = asyncio.Queue(maxsize=8)
        self.busy = False  # the worker is on a turn

    def enqueue(self, turn: TurnInput) -> None:
        try:
            self.queue.put_nowait(turn)
        except asyncio.QueueFull:
            raise ProtocolError(
                "busy", "the agent is still working on earlier turns; this one was not processed"
            ) from None

    async def run(self, greet: bool = True) -> None:
        """Greet (not on a resumed call), then take turns one at a time."""
        if greet:
            await self._greet()
        await self._channel.agent("listening")
        while not cancelling():
            turn = await self.queue.get()
            self.busy = True
            try:
                await self._handle(turn)
            finally:
                self.busy = False
            if not self.queue.qsize() and not self._speaker.speaking():
                await self._channel.agent("listening")

    async def _greet(self) -> None:
        speaker = self._speaker
        greeting = self.session.greeting()
        try:
            first = await within(next_item(greeting), self._dl.greeting_s, "greeting")
            record = TurnRecord(turn_id=self.session.next_turn_id, source="greeting")
            sentences = self._record.sentences(greeting, record, deadline=self._dl.greeting_s, head=first)
            ok = await speaker.reply(record.turn_id, sentences, metrics=None)
        except Exception as exc:
            log.warning("call %s: greeting failed: %r", self.session_id, exc)
            ok = False
        if not ok:
            await speaker.reply(None, aiter_of([FALLBACK_GREETING]), metrics=None)
        if speaker.settle_now:
            await speaker.settle(resume=False)

    async def _handle(self, turn: TurnInput) -> None:
        try:
            await self._handle_turn(turn)
        finally:
            discard_ahead(turn.ahead)  # a no-op once its audio was played

    async def _handle_turn(self, turn: TurnInput) -> None:
        speaker = self._speaker
        if turn.source in ("say", "checkin", "goodbye"):
            await speaker.settle(resume=False)
            said = TurnRecord(turn_id=self.session.next_turn_id, source=turn.source, sentences=[turn.text])
            recorded = await self._record.record(said)
            await speaker.reply(said.turn_id if recorded else None, aiter_of([turn.text]), metrics=None)
            await speaker.settle(resume=False)
            if turn.source == "goodbye":
                self._finish("idle_timeout")
            return
        metrics: dict = {"endpoint_delay_ms": round(turn.endpoint_ms, 1), **(turn.turn_end or {})}
        text, confidence, ahead = turn.text, None, None
        if turn.source == "speech":
            if not speaker.speaking():
                await self._channel.agent("thinking")
            ahead = await self._transcript(turn, metrics)
            if ahead is None:
                return
            text, confidence = ahead.text, ahead.confidence
        else:
            metrics["eos_to_transcript_ms"] = 0.0
        if speaker.interrupted is not None:
            if turn.source == "speech" and is_backchannel(text) and not speaker.settle_now:
                await speaker.settle(resume=True)  # a cough, an "uh-huh": carry on where we stopped
                return
            await speaker.settle(resume=False)  # they took the turn: keep only what they heard
        elif turn.over_agent and is_backchannel(text):
            return  # a backchannel under the agent's speech is not a turn
        if turn.source == "speech" and is_backchannel(text):
            await self._channel.agent("listening")  # noise or a breath: nothing was said
            return
        await self._channel.agent("thinking")
        summary = None
        if ahead is not None and ahead.prepared is not None:
            summary = await self._commit(ahead, text, turn, confidence, metrics)
        if summary is None:  # not run ahead, or the session changed since: the turn is run now
            summary = await self._run_dialogue(text, turn.source, confidence, metrics, turn.eos_at)
            if summary is None:
                return
        if summary.escalate:
            await self._channel.send_text(event("escalation", reason=summary.escalate))
        if summary.end_call:
            if speaker.interrupted is None:
                await speaker.pacer.drain()
            await speaker.settle(resume=False)
            self._finish(summary.end_reason or "agent_hangup")
            return
        if speaker.settle_now:
            await speaker.settle(resume=False)

    async def _commit(self, ahead: Ahead, text: str, turn: TurnInput, confidence, metrics: dict) -> TurnSummary | None:
        """Play a turn run ahead. None when the session changed since it was prepared (a typed
        turn, a session-API reply): its memory is stale, so the turn is run anew."""
        prepared = ahead.prepared
        record = TurnRecord(
            turn_id=self.session.next_turn_id,
            source=turn.source,
            transcript=text,
            confidence=confidence,
            sentences=prepared.sentences,
            summary=prepared.summary,
            read_version=prepared.version,
        )
        self._record.trace.turn_started(record.turn_id, turn.eos_at, turn.source)
        recorded = await self._record.record(record)
        if recorded is None:
            await self._channel.error("dialogue_failed", "the agent could not answer this turn")
            await self._speaker.say_fallback(SORRY_DIALOGUE)
            return TurnSummary()
        if recorded.stale:
            log.info("call %s: the session changed since this turn was run ahead; running it again", self.session_id)
            return None
        metrics.update(preempted="reply", dialogue_first_sentence_ms=ahead.dialogue_ms)
        await self._channel.send_text(event("transcript", turn_id=record.turn_id, text=recorded.transcript, final=True))
        audio, ahead.audio = ahead.audio, None  # from here on the reply owns it
        sentences = aiter_of(prepared.sentences)
        await self._speaker.reply(record.turn_id, sentences, metrics, turn.eos_at, audio, ahead.tts_ms)
        return prepared.summary

    async def _transcript(self, turn: TurnInput, metrics: dict) -> Ahead | None:
        """The run-ahead's transcript when it had one, else transcribe now."""
        if turn.ahead is not None:
            try:
                ahead = await asyncio.wait_for(turn.ahead, self._turn_timeout_s)
                metrics["preempted"] = "transcript"
                metrics["asr_provider"] = ahead.provider
                metrics["eos_to_transcript_ms"] = round(max(0.0, ahead.ready_at - turn.eos_at) * 1000, 1)
                return ahead
            except Exception as exc:
                log.info("call %s: run-ahead unusable (%r); transcribing now", self.session_id, exc)
        try:
            transcribing = self._listener.hearing.transcribe(turn.audio, turn.end_sample)
            result = await asyncio.wait_for(transcribing, self._turn_timeout_s)
        except Exception as exc:
            log.warning("call %s: ASR failed: %r", self.session_id, exc)
            await self._channel.error("asr_failed", "speech recognition failed for this turn")
            await self._speaker.say_fallback(SORRY_ASR)
            return None
        metrics["preempted"] = "none"
        metrics["asr_provider"] = result["provider"]
        if "compute_ms" in result:
            metrics["asr_compute_ms"] = result["compute_ms"]
        metrics["eos_to_transcript_ms"] = ms_since(turn.eos_at)
        return Ahead(result["text"], result["confidence"], time.monotonic())

    async def _run_dialogue(
        self, text: str, source: str, confidence, metrics: dict, eos_at: float
    ) -> TurnSummary | None:
        """The turn through the Dialogue, its sentences spoken as they come; recorded with the
        session actor when the reply stream closes."""
        speaker, ctx = self._speaker, self.session.context
        record = TurnRecord(turn_id=self.session.next_turn_id, source=source, transcript=text, confidence=confidence)
        self._record.trace.turn_started(record.turn_id, eos_at, source)
        if source != "reply":
            shown = masked_transcript(text, ctx.awaiting)
            await self._channel.send_text(event("transcript", turn_id=record.turn_id, text=shown, final=True))
        if ctx.over_turn_limit:
            record.summary = TurnSummary(intent="max_turns", end_call=True)
            sentences = self._record.passing(record, aiter_of([MAX_TURNS_GOODBYE]))
            await speaker.reply(record.turn_id, sentences, metrics, eos_at)
            return record.summary
        started = time.monotonic()
        try:
            items = self.session.respond(text, from_caller=source != "reply")
        except Exception as exc:
            items = _failed(exc)
        ok = await speaker.reply(
            record.turn_id, self._record.sentences(items, record, metrics, started), metrics, eos_at
        )
        if not ok:
            await speaker.settle(resume=False)
            if source == "reply":
                await self.session.command_failed("reply")
            await self._channel.error("dialogue_failed", "the agent could not answer this turn")
            await speaker.say_fallback(SORRY_DIALOGUE)
            return None
        return record.summary or TurnSummary()


async def _failed(exc: Exception):
    raise exc
    yield  # an async generator that fails when read
