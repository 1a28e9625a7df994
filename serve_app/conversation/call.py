"""One call on the ingress WebSocket: hear (listener), think (turns: the Dialogue's reply, each
turn recorded with the session actor), speak (speaker). This module wires the parts and runs the call's life.

Tasks share the call: the listener (frames in, VAD endpointing), the turn worker (transcribe,
dialogue, synthesize), the idle timer, the session-API command stream and a TTL timer. Whatever
ends the call sets one future with a reason and close code; `run` then says `session.ended`
and closes. The listener reports through hooks, which this class implements: it decides what a
pause, an end of turn or speech over the agent means for turns and speaking.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from common.config import Settings
from deployments.vad.engine import VADStream
from models.protocol import CloseCode, ConnectParams, event, session_started
from models.session import TurnFinish
from serve_app.conversation.ahead import AheadRunner
from serve_app.conversation.barge import BargeIn
from serve_app.conversation.channel import CLOSE_WAIT_S, Channel, quietly
from serve_app.conversation.hearing import Transcribe
from serve_app.conversation.listener import Listener
from serve_app.conversation.moving import between_turns
from serve_app.conversation.pauses import Pauses
from serve_app.conversation.record import Record
from serve_app.conversation.session_client import SessionClient
from serve_app.conversation.speaker import Speaker, Synthesize
from serve_app.conversation.timers import Timers
from serve_app.conversation.turn_parts import TurnInput
from serve_app.conversation.turns import Turns
from serve_app.deadlines import Deadlines
from serve_app.tracing import NO_TRACE, CallTrace, NoTrace

log = logging.getLogger(__name__)


class Call:
    def __init__(
        self,
        ws,
        params: ConnectParams,
        session: SessionClient,
        transcribe: Transcribe,
        synthesize: Synthesize,
        vad_stream: VADStream,
        settings: Settings,
        observe: Callable[[dict], None] | None = None,  # each turn's turn.metrics
        breaker=None,
        clock=time.monotonic,
        resume_token: str | None = None,
        resumed: bool = False,
        on_barge_in: Callable[[], None] | None = None,
        trace: CallTrace | NoTrace = NO_TRACE,
    ):
        self.params, self.session, self.session_id = params, session, session.session_id
        session_id = self.session_id
        self._settings = settings
        self._resume_token, self.resumed = resume_token, resumed  # resumed: no greeting
        self._dl = Deadlines.from_settings(settings)
        self._ended: asyncio.Future = asyncio.get_running_loop().create_future()
        self.finalized = False
        self.held = False  # dropped without hang-up and kept for a resume
        self._final_tried = False
        self._drain: asyncio.Task | None = None
        self._clock = clock
        self._on_barge_in = on_barge_in or (lambda: None)
        self.channel = Channel(ws, lambda: self.finish("caller_disconnected", None), clock)
        self.listener = Listener(
            self.channel, self, params, session_id, transcribe, vad_stream, settings, breaker, clock
        )
        observe = observe or (lambda metrics: None)
        self.record = Record(self.channel, session, self._dl, observe, self._awaiting, trace)
        self.speaker = Speaker(
            self.channel,
            params,
            session_id,
            synthesize,
            self._dl,
            settings.playback_lead_ms / 1000,
            self.record.finish_turn,
            settings.output_frame_ms,
        )
        self.ahead = AheadRunner(
            self.channel,
            self.listener.hearing,
            self.listener.partial_event,
            session,
            synthesize,
            params,
            session_id,
            self._dl,
            lambda text: self.pauses.heard(text),
        )
        self.barge = BargeIn.hearing(self.speaker, self.listener, settings, clock)
        self.pauses = Pauses(settings, self.listener.endpointer)
        self.turns = Turns(
            self.channel,
            self.listener,
            self.speaker,
            self.ahead,
            self.record,
            session,
            self._dl,
            settings.turn_timeout_ms / 1000,
            self.finish,
        )
        self.timers = Timers(
            self.channel,
            self.listener,
            self.speaker,
            self.turns,
            session,
            settings,
            self.finish,
        )

    # --- lifecycle ---------------------------------------------------------

    async def run(self) -> str:
        """Serve the call until it ends; returns the end reason."""
        params = self.params
        started = session_started(
            self.session_id, params.sample_rate, params.output_sample_rate, self._resume_token, self.resumed
        )
        await self.channel.send_text(started)
        tasks = [
            asyncio.create_task(self.listener.run(), name="receiver"),
            asyncio.create_task(self.turns.run(greet=not self.resumed), name="worker"),
            asyncio.create_task(self.timers.ttl(), name="ttl"),
            asyncio.create_task(self.timers.idle(), name="idle"),
            asyncio.create_task(self.timers.commands(), name="commands"),
        ]
        for t in tasks:
            t.add_done_callback(self._task_done)
        cut = None
        try:
            reason, close_code = await self._ended
        finally:
            cut = self.speaker.heard_at_drop()  # before the reply's task is cancelled
            self.ahead.cancel()
            self.barge.reset()
            for t in [*tasks, self.listener.partial, self.speaker.task]:
                if t is not None:
                    t.cancel()
            # Bounded: a task that lost its cancellation (asyncio.wait_for in Python 3.11 can
            # swallow one when its inner call completes at the same moment) must not hold the line.
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_WAIT_S)
            for t in stuck:
                log.warning("call %s: %s task did not stop in time; left cancelled", self.session_id, t.get_name())
                t.cancel()
            await quietly(self.listener.hearing.close(), CLOSE_WAIT_S, "hearing close")
        if cut is not None:  # the reply the caller was hearing: only what they heard stays
            self.session.finish_unawaited(TurnFinish(turn_id=cut[0], interrupted=True, heard=cut[1]))
        if self._drain is not None:
            self._drain.cancel()
        moving = reason == "draining"
        if (reason == "caller_disconnected" or moving) and self._settings.resume_window_s > 0:
            await self._hold()
        await self.checkpoint_final(reason)  # the store is final before the caller hears session.ended
        if close_code is not None:
            token = {"resume_token": self._resume_token} if moving and self.held else {}
            await self.channel.send_text(event("session.ended", reason=reason, **token))
            await self.channel.close(close_code, reason)
        self.record.trace.end(reason)  # flushed in the background: no one waits on Langfuse
        return reason

    def drain(self, within_s: float) -> None:
        """This replica is stopping: end the call between turns (`draining`, with the resume
        token, so the client moves to another replica without losing a turn)."""
        if self._drain is None and not self._ended.done():
            self._drain = asyncio.get_running_loop().create_task(self._drain_after_turn(within_s))

    async def _drain_after_turn(self, within_s: float) -> None:
        await between_turns(self.listener, self.turns, self.speaker, within_s, self.session_id, self._clock)
        self.finish("draining", CloseCode.SERVICE_RESTART)

    async def _hold(self) -> None:
        """A drop without hang-up: the call is kept for a resume instead of ended."""
        try:
            await self.session.hold()
            self.held = True
            self._final_tried = True  # held: no final checkpoint
        except Exception as exc:
            log.error("call %s: could not hold the call for a resume: %r", self.session_id, exc)

    async def checkpoint_final(self, reason: str) -> None:
        """Tried once, within its deadline: past it the actor is killed at release, unsaved."""
        if self._final_tried:
            return
        self._final_tried = True
        try:
            await self.session.finalize(reason)
            self.finalized = True
        except Exception as exc:
            log.error("call %s: final checkpoint failed: %r", self.session_id, exc)

    def _awaiting(self, what: str | None) -> None:
        self.pauses.awaited = what
        self.listener.awaiting_pin = what == "pin"

    def finish(self, reason: str, close_code: int | None = CloseCode.NORMAL) -> None:
        if not self._ended.done():
            self._ended.set_result((reason, close_code))

    def _task_done(self, task: asyncio.Task) -> None:
        if task.cancelled() or self._ended.done():
            return
        exc = task.exception()
        if exc is not None:
            log.error("call %s: %s task failed: %r", self.session_id, task.get_name(), exc, exc_info=exc)
            self.finish("server_error", CloseCode.SERVER_ERROR)

    # --- the listener's hooks ------------------------------------------------

    def on_speech_started(self) -> None:
        self.timers.idle_checks = 0
        self.barge.reset()

    def on_paused(self, audio: bytes, at_sample: int) -> None:
        self.ahead.cancel()
        self.listener.drop_partial()
        self.pauses.paused()
        if self._settings.preemptive_ms:
            speaker = self.speaker
            reply_too = not (self.turns.busy or speaker.interrupted or speaker.speaking() or self.turns.queue.qsize())
            self.ahead.start(audio, at_sample, reply_too)

    def on_resumed(self) -> None:
        self.ahead.cancel()  # the caller went on: what was started early is stale
        self.pauses.resumed()

    def on_end_of_turn(self, audio: bytes, at_sample: int, trailing_silence_ms: float) -> None:
        eos_at = time.monotonic() - trailing_silence_ms / 1000
        over_agent = self.speaker.speaking() and self.speaker.cut_at_s is None
        pending = self.ahead.task is not None and not self.ahead.task.done()
        turn = TurnInput(
            "speech",
            eos_at=eos_at,
            endpoint_ms=trailing_silence_ms,
            audio=audio,
            end_sample=at_sample,
            ahead=self.ahead.take(),
            over_agent=over_agent,
            turn_end=self.pauses.ended(transcript_pending=pending),
        )
        self.barge.reset()
        self.turns.enqueue(turn)

    async def on_speech(self, speech_ms: float) -> None:
        cut_before = self.speaker.cut_at_s
        await self.barge.on_speech(speech_ms)
        if cut_before is None and self.speaker.cut_at_s is not None:  # once per cut, however many frames follow
            self._on_barge_in()

    def on_text(self, text: str) -> None:
        self.timers.idle_checks = 0
        self.turns.enqueue(TurnInput("text", eos_at=time.monotonic(), text=text))

    def on_close(self, reason: str, close_code: int | None) -> None:
        self.finish(reason, close_code)
