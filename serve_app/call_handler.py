"""One call on the ingress WebSocket: hear (VAD + ASR), think (session actor), speak (TTS).

Tasks share the call: the receiver (frames in, VAD endpointing, barge-in), the turn worker
(transcribe, dialogue, synthesize), the idle timer, the session-API command poll and a TTL
timer. Whatever ends the call sets one future with a reason and close code; `run` then says
`session.ended` and closes.

Latency: when the caller pauses (`preemptive_ms`), the turn is run ahead: ASR on the audio so
far, then the dialogue (only if it needs no tool: nothing that cannot be taken back), then the
first sentence's audio, all held until the endpoint confirms the caller stopped. If they go
on, it is thrown away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from common.audio import StreamResampler
from common.config import Settings
from common.pii import mask_pii
from deployments.vad.engine import Endpointer, SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted, VADStream
from models.protocol import (
    CloseCode,
    ConnectParams,
    HangupMessage,
    ProtocolError,
    TextMessage,
    check_audio_frame,
    error_event,
    event,
    parse_client_text,
    session_started,
)
from serve_app.deadlines import Deadlines, StageTimeout, first_within, items_within, next_item, within
from serve_app.guards import ErrorLimiter, TokenBucket
from serve_app.hearing import Hearing, Transcribe
from serve_app.pacer import AudioPacer
from serve_app.partial_mask import mask_number_runs
from serve_app.playback import Speech, heard, is_backchannel
from serve_app.prefetch import Prefetch, stop_stream
from serve_app.turn_parts import Ahead, Interrupted, TurnInput
from serve_app.turn_parts import discard_ahead as _discard

log = logging.getLogger(__name__)

VAD_RATE = 16000
AUDIO_AHEAD_ALLOWANCE_S = 10.0  # how far caller audio may run ahead of the wall clock (bursty networks)
SORRY_ASR = "Sorry, I couldn't hear that clearly. Could you say it again?"
SORRY_DIALOGUE = "Sorry, something went wrong on my side. Could you say that again?"
FALLBACK_GREETING = "Hello, thanks for calling. How can I help you today?"
CLOSE_WAIT_S = 1.0  # at the end of a call, for the Deepgram stream and the socket's close
CHECK_IN = "Are you still there?"
IDLE_GOODBYE = "I haven't heard from you, so I'll end the call now. Goodbye."

Synthesize = Callable[[str, int, str, bool], AsyncIterator[bytes]]  # text, sample rate, locale, first of a reply


class CallHandler:
    def __init__(
        self,
        ws,
        params: ConnectParams,
        session_id: str,
        actor,
        transcribe: Transcribe,
        synthesize: Synthesize,
        vad_stream: VADStream,
        settings: Settings,
        observe: Callable[[str, float], None] | None = None,
        breaker=None,
        clock=time.monotonic,
    ):
        self.ws = ws
        self.params = params
        self.session_id = session_id
        self.actor = actor
        self._transcribe = transcribe  # Whisper: partial transcripts
        self._hearing = Hearing(settings, params.locale, transcribe, breaker, self._interim, session_id)  # utterances
        self._synthesize = synthesize
        self._settings = settings
        self._observe = observe or (lambda stage, ms: None)
        self._endpointer = Endpointer(
            vad_stream,
            threshold=settings.vad_threshold,
            min_speech_ms=settings.min_speech_ms,
            end_silence_ms=settings.end_silence_ms,
            max_utterance_s=settings.max_utterance_s,
            preemptive_ms=settings.preemptive_ms,
        )
        self._resampler = StreamResampler(params.sample_rate, VAD_RATE)
        self._pacer = AudioPacer(self._send_bytes, params.output_sample_rate, settings.playback_lead_ms / 1000)
        self._turns: asyncio.Queue[TurnInput] = asyncio.Queue(maxsize=8)
        self._text_bucket = TokenBucket(settings.text_rate_per_s, settings.text_burst)
        self._frame_bucket = TokenBucket(settings.max_frames_per_s, settings.frame_burst, clock)  # any size counts
        self._errors = ErrorLimiter(clock=clock)
        self._dl = Deadlines.from_settings(settings)
        self._awaiting_pin = False  # the agent asked for a PIN: partial transcripts mask numbers
        self._dropped = 0
        self._audio_s = 0.0  # caller audio received, to refuse audio far faster than real time
        self._audio_clock: float | None = None
        self._send_lock = asyncio.Lock()
        self._ended: asyncio.Future = asyncio.get_running_loop().create_future()
        self._closed = False
        self._agent_state = None
        self._user_state = "silent"
        self.finalized = False
        self._final_tried = False
        self._busy = False  # the worker is on a turn
        self._ahead: asyncio.Task | None = None
        self._partial: asyncio.Task | None = None
        self._partial_at_ms = 0.0
        self._speech: Speech | None = None  # the reply being spoken
        self._speech_task: asyncio.Task | None = None
        self._cut_at_s: float | None = None  # playback position of the last barge-in
        self._interrupted: Interrupted | None = None
        self._settle_now = False  # interrupt() from the session API: no resume
        self._mute = False  # set at barge-in: no agent audio may follow audio.clear
        self._idle_checks = 0

    # --- lifecycle ---------------------------------------------------------

    async def run(self) -> str:
        """Serve the call until it ends; returns the end reason."""
        await self._send_text(session_started(self.session_id, self.params.sample_rate, self.params.output_sample_rate))
        tasks = [
            asyncio.create_task(self._receiver(), name="receiver"),
            asyncio.create_task(self._worker(), name="worker"),
            asyncio.create_task(self._ttl(), name="ttl"),
            asyncio.create_task(self._idle(), name="idle"),
            asyncio.create_task(self._commands(), name="commands"),
        ]
        for t in tasks:
            t.add_done_callback(self._task_done)
        try:
            reason, close_code = await self._ended
        finally:
            _discard(self._ahead)
            for t in [*tasks, self._partial, self._speech_task]:
                if t is not None:
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await _quietly(self._hearing.close(), CLOSE_WAIT_S, "hearing close")
        await self.checkpoint_final(reason)  # the store is final before the caller hears session.ended
        if close_code is not None:
            await self._send_text(event("session.ended", reason=reason))
            await self._close(close_code, reason)
        return reason

    async def checkpoint_final(self, reason: str) -> None:
        """Tried once, within its deadline: past it the actor is killed at release, unsaved."""
        if self._final_tried:
            return
        self._final_tried = True
        try:
            await within(self.actor.finalize.remote(reason), self._dl.checkpoint_s, "final checkpoint")
            self.finalized = True
        except Exception as exc:
            log.error("call %s: final checkpoint failed: %r", self.session_id, exc)

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

    async def _ttl(self) -> None:
        await asyncio.sleep(self._settings.session_ttl_s)
        self.finish("session_ttl")

    # --- sending -----------------------------------------------------------

    async def _send_text(self, text: str) -> None:
        if self._closed:
            return
        try:
            async with self._send_lock:
                await self.ws.send_text(text)
        except Exception:
            self._closed = True
            self.finish("caller_disconnected", None)

    async def _send_bytes(self, data: bytes) -> None:
        if self._closed:
            raise asyncio.CancelledError
        try:
            async with self._send_lock:
                if self._mute:  # a barge-in came first: this audio must never reach the caller
                    raise asyncio.CancelledError
                await self.ws.send_bytes(data)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._closed = True
            self.finish("caller_disconnected", None)
            raise asyncio.CancelledError from None

    async def _close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        await _quietly(self.ws.close(code=code, reason=reason[:120]), CLOSE_WAIT_S, "close")

    async def _error(self, code: str, message: str, always: bool = False) -> None:
        """At most one error event per code a second (a flood is not echoed); `always` for
        the one before a close."""
        held = self._errors.admit(code)
        if held is not None or always:
            await self._send_text(error_event(code, message, held or 0))

    async def _actor_call(self, ref, what: str, default=None):
        """A bookkeeping call to the session actor, within its deadline; `default` if it fails."""
        try:
            return await within(ref, self._dl.actor_call_s, what)
        except Exception as exc:
            log.warning("call %s: session actor %s failed: %r", self.session_id, what, exc)
            return default

    async def _agent(self, state: str) -> None:
        if state != self._agent_state:
            self._agent_state = state
            await self._send_text(event("agent.state", state=state))

    async def _user(self, state: str) -> None:
        if state != self._user_state:
            self._user_state = state
            await self._send_text(event("user.state", state=state))

    # --- receiving ---------------------------------------------------------

    async def _receiver(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                self._closed = True
                self.finish("caller_disconnected", None)
                return
            try:
                if msg.get("bytes") is not None:
                    if not self._frame_bucket.take():
                        rate = self._settings.max_frames_per_s
                        raise ProtocolError("flooding", f"more than {rate:g} binary frames a second", CloseCode.POLICY)
                    await self._on_audio(msg["bytes"])
                elif msg.get("text") is not None:
                    await self._on_text(msg["text"])
            except ProtocolError as exc:
                await self._error(exc.code, exc.message, always=exc.close_code is not None)
                if exc.close_code is not None:
                    self.finish(exc.code, exc.close_code)
                    return

    async def _on_audio(self, frame: bytes) -> None:
        check_audio_frame(frame)
        self._check_audio_rate(len(frame) / 2 / self.params.sample_rate)
        pcm = self._resampler.process(frame)
        await self._hearing.feed(pcm)
        for ev in self._endpointer.feed(pcm):
            if isinstance(ev, SpeechStarted):
                self._idle_checks = 0
                await self._user("speaking")
            elif isinstance(ev, SpeechPaused):
                self._cancel_ahead()
                if self._settings.preemptive_ms:
                    reply_too = not (self._busy or self._interrupted or self._speaking() or self._turns.qsize())
                    self._ahead = asyncio.create_task(self._run_ahead(ev.audio, ev.at_sample, reply_too))
            elif isinstance(ev, SpeechResumed):
                self._cancel_ahead()  # the caller went on: what was started early is stale
            elif isinstance(ev, SpeechEnded):
                await self._user("silent")
                eos_at = time.monotonic() - ev.trailing_silence_ms / 1000
                ahead, self._ahead, self._partial_at_ms = self._ahead, None, 0.0
                over_agent = self._speaking() and self._cut_at_s is None
                self._enqueue(
                    TurnInput(
                        "speech",
                        eos_at=eos_at,
                        endpoint_ms=ev.trailing_silence_ms,
                        audio=ev.audio,
                        end_sample=ev.at_sample,
                        ahead=ahead,
                        over_agent=over_agent,
                    )
                )
        if self._endpointer.speaking:
            if self._speaking() and self._endpointer.speech_ms >= self._settings.barge_in_min_ms:
                await self._barge_in()
            self._maybe_partial()

    def _speaking(self) -> bool:
        return self._speech_task is not None and not self._speech_task.done()

    def _cancel_ahead(self) -> None:
        _discard(self._ahead)
        self._ahead = None

    def _maybe_partial(self) -> None:
        """A partial transcript every `partial_interval_ms` of speech, one at a time."""
        interval = self._settings.partial_interval_ms
        speech_ms = self._endpointer.speech_ms
        if not interval or speech_ms - self._partial_at_ms < interval or (self._partial and not self._partial.done()):
            return
        if self._hearing.streams_partials:
            return  # Deepgram's interim results are the partials
        self._partial_at_ms = speech_ms
        self._partial = asyncio.create_task(self._send_partial(self._endpointer.utterance_audio()))

    async def _send_partial(self, audio: bytes) -> None:
        try:
            result = await asyncio.wait_for(
                self._transcribe(audio, self.params.locale), self._settings.turn_timeout_ms / 1000
            )
        except Exception as exc:
            log.info("call %s: partial transcript skipped: %r", self.session_id, exc)
            return
        if result["text"] and self._endpointer.speaking:
            await self._send_text(self._partial_event(result["text"]))

    def _interim(self, text: str) -> None:
        """A Deepgram interim result: a partial transcript while the caller speaks."""
        if self._endpointer.speaking and not is_backchannel(text):
            asyncio.get_running_loop().create_task(self._send_text(self._partial_event(text)))

    def _partial_event(self, text: str) -> str:
        """Personal data masked; while a PIN is awaited, every number too (it may be the PIN's start)."""
        masked = mask_pii(text)
        if self._awaiting_pin:
            masked = mask_number_runs(masked)
        return event("transcript", turn_id=None, text=masked, final=False)

    def _note(self, summary: dict) -> None:
        """A turn's outcome from the session actor: is a PIN awaited now?"""
        if "awaiting" in summary:
            self._awaiting_pin = summary["awaiting"] == "pin"

    async def _barge_in(self) -> None:
        """The caller talks over the agent: stop the audio at once and tell the client to drop
        what it buffered. Whether they really took the turn is decided when they stop."""
        speech = self._speech
        self._mute = True  # before anything else: no frame may follow audio.clear
        self._cut_at_s = max(
            0.0,
            (self._pacer.bytes_sent - speech.start_bytes) / 2 / self.params.output_sample_rate - self._pacer.lead_s(),
        )
        self._pacer.clear()
        self._speech_task.cancel()
        await self._send_text(event("audio.clear", turn_id=speech.turn_id))
        await self._agent("listening")

    def _check_audio_rate(self, seconds: float) -> None:
        """A microphone sends audio at real time; allow jitter, refuse a flood."""
        now = time.monotonic()
        if self._audio_clock is None:
            self._audio_clock = now
        if self._audio_s + seconds > (now - self._audio_clock) + AUDIO_AHEAD_ALLOWANCE_S:
            self._drop(
                "audio_too_fast",
                f"audio is arriving faster than real time (over {AUDIO_AHEAD_ALLOWANCE_S:g} s ahead); "
                "this frame was dropped",
            )
        self._audio_s += seconds

    def _drop(self, code: str, message: str) -> None:
        self._dropped += 1
        if self._dropped > self._settings.max_dropped_messages:
            raise ProtocolError("flooding", "too many frames over the rate limit", CloseCode.POLICY)
        raise ProtocolError(code, message)

    async def _on_text(self, raw: str) -> None:
        if not self._text_bucket.take():
            self._drop(
                "rate_limited",
                f"more than {self._settings.text_rate_per_s:g} text messages a second; this one was not processed",
            )
        msg = parse_client_text(raw)
        if isinstance(msg, HangupMessage):
            self.finish("hangup")
        elif isinstance(msg, TextMessage):
            self._idle_checks = 0
            self._enqueue(TurnInput("text", eos_at=time.monotonic(), text=msg.text))

    def _enqueue(self, turn: TurnInput) -> None:
        try:
            self._turns.put_nowait(turn)
        except asyncio.QueueFull:
            raise ProtocolError(
                "busy", "the agent is still working on earlier turns; this one was not processed"
            ) from None

    # --- the turn worker ---------------------------------------------------

    async def _worker(self) -> None:
        greeting = self.actor.greet.remote()
        try:
            first = await within(next_item(greeting), self._dl.greeting_s, "greeting")
            sentences = self._sentences_from(greeting, {}, deadline=self._dl.greeting_s)
            ok = await self._reply(first["turn_id"], sentences, metrics=None)
        except Exception as exc:
            log.warning("call %s: greeting failed: %r", self.session_id, exc)
            ok = False
        if not ok:
            await self._reply(None, _aiter([FALLBACK_GREETING]), metrics=None)
        if self._settle_now:
            await self._settle(resume=False)
        await self._agent("listening")
        while True:
            turn = await self._turns.get()
            self._busy = True
            try:
                await self._handle(turn)
            finally:
                self._busy = False
            if not self._turns.qsize() and not self._speaking():
                await self._agent("listening")

    async def _handle(self, turn: TurnInput) -> None:
        try:
            await self._handle_turn(turn)
        finally:
            _discard(turn.ahead)  # a no-op once its audio was played

    async def _handle_turn(self, turn: TurnInput) -> None:
        if turn.source in ("say", "checkin", "goodbye"):
            await self._settle(resume=False)
            said = await self._actor_call(
                self.actor.say_turn.remote(turn.text, turn.source), "say_turn", {"turn_id": None}
            )
            await self._reply(said["turn_id"], _aiter([turn.text]), metrics=None)
            await self._settle(resume=False)
            if turn.source == "goodbye":
                self.finish("idle_timeout")
            return
        metrics: dict = {"endpoint_delay_ms": round(turn.endpoint_ms, 1)}
        text, confidence, ahead = turn.text, None, None
        if turn.source == "speech":
            if not self._speaking():
                await self._agent("thinking")
            ahead = await self._transcript(turn, metrics)
            if ahead is None:
                return
            text, confidence = ahead.text, ahead.confidence
        else:
            metrics["eos_to_transcript_ms"] = 0.0
        if self._interrupted is not None:
            if turn.source == "speech" and is_backchannel(text) and not self._settle_now:
                await self._settle(resume=True)  # a cough, an "uh-huh": carry on where we stopped
                return
            await self._settle(resume=False)  # they took the turn: keep only what they heard
        elif turn.over_agent and is_backchannel(text):
            return  # a backchannel under the agent's speech is not a turn
        if turn.source == "speech" and is_backchannel(text):
            await self._agent("listening")  # noise or a breath: nothing was said
            return
        await self._agent("thinking")
        summary = None
        if ahead is not None and ahead.prepared is not None:
            summary = await self._commit(ahead, text, turn, confidence, metrics)
        if summary is None:  # not run ahead, or the session changed since: the turn is run now
            summary = await self._run_dialogue(text, turn.source, confidence, metrics, turn.eos_at)
            if summary is None:
                return
        if summary.get("escalate"):
            await self._send_text(event("escalation", reason=summary["escalate"]))
        if summary.get("end_call"):
            if self._interrupted is None:
                await self._pacer.drain()
            await self._settle(resume=False)
            self.finish(summary.get("reason") or "agent_hangup")
            return
        if self._settle_now:
            await self._settle(resume=False)

    async def _commit(self, ahead: Ahead, text: str, turn: TurnInput, confidence, metrics: dict) -> dict | None:
        """Play a turn run ahead. None when the session changed since it was prepared (a typed
        turn, a session-API reply): its memory is stale, so the turn is run anew."""
        try:
            ref = self.actor.commit_turn.remote(text, turn.source, confidence, ahead.prepared)
            committed = await within(ref, self._dl.actor_call_s, "commit_turn")
        except Exception as exc:
            log.warning("call %s: commit failed: %r", self.session_id, exc)
            await self._error("dialogue_failed", "the agent could not answer this turn")
            await self._say_fallback(SORRY_DIALOGUE)
            return {}
        if committed.get("stale"):
            log.info("call %s: the session changed since this turn was run ahead; running it again", self.session_id)
            return None
        self._note(committed)
        metrics.update(preempted="reply", dialogue_first_sentence_ms=ahead.dialogue_ms)
        turn_id = committed["turn_id"]
        await self._send_text(event("transcript", turn_id=turn_id, text=committed["transcript"], final=True))
        audio, ahead.audio = ahead.audio, None  # from here on the reply owns it
        await self._reply(turn_id, _aiter(ahead.prepared["sentences"]), metrics, turn.eos_at, audio, ahead.tts_ms)
        return committed

    async def _transcript(self, turn: TurnInput, metrics: dict) -> Ahead | None:
        """The run-ahead's transcript when it had one, else transcribe now."""
        if turn.ahead is not None:
            try:
                ahead = await asyncio.wait_for(turn.ahead, self._settings.turn_timeout_ms / 1000)
                metrics["preempted"] = "transcript"
                metrics["asr_provider"] = ahead.provider
                metrics["eos_to_transcript_ms"] = round(max(0.0, ahead.ready_at - turn.eos_at) * 1000, 1)
                return ahead
            except Exception as exc:
                log.info("call %s: run-ahead unusable (%r); transcribing now", self.session_id, exc)
        try:
            result = await asyncio.wait_for(
                self._hearing.transcribe(turn.audio, turn.end_sample), self._settings.turn_timeout_ms / 1000
            )
        except Exception as exc:
            log.warning("call %s: ASR failed: %r", self.session_id, exc)
            await self._error("asr_failed", "speech recognition failed for this turn")
            await self._say_fallback(SORRY_ASR)
            return None
        metrics["preempted"] = "none"
        metrics["asr_provider"] = result["provider"]
        metrics["eos_to_transcript_ms"] = _ms_since(turn.eos_at)
        return Ahead(result["text"], result["confidence"], time.monotonic())

    async def _run_ahead(self, audio: bytes, end_sample: int, reply_too: bool) -> Ahead:
        """Transcribe the utterance so far; if allowed, prepare the reply and its first audio."""
        result = await self._hearing.transcribe(audio, end_sample)
        ahead = Ahead(result["text"], result["confidence"], time.monotonic(), provider=result["provider"])
        if ahead.text and not is_backchannel(ahead.text):
            await self._send_text(self._partial_event(ahead.text))
        if not reply_too or is_backchannel(ahead.text):
            log.debug("call %s: transcript only ahead (reply_too=%s)", self.session_id, reply_too)
            return ahead
        t0 = time.monotonic()
        try:
            prepared = await within(self.actor.prepare_turn.remote(ahead.text), self._dl.dialogue_s, "prepare_turn")
        except Exception as exc:
            log.warning("call %s: reply not prepared ahead: %r", self.session_id, exc)
            return ahead  # the turn runs at the endpoint, which reports any failure
        if prepared.get("refused") or not prepared["sentences"]:
            log.info(
                "call %s: reply not prepared ahead (%s)",
                self.session_id,
                "refused" if prepared.get("refused") else "no sentence",
            )
            return ahead
        ahead.dialogue_ms = _ms_since(t0)
        t1 = time.monotonic()
        audio = Prefetch(
            self._synthesize(prepared["sentences"][0], self.params.output_sample_rate, self.params.locale, True)
        )
        try:
            started = await within(audio.started(), self._dl.tts_first_audio_s, "tts first audio")
        except asyncio.CancelledError:
            audio.cancel()  # the caller went on: this audio will never be played
            raise
        except StageTimeout:
            started = False
        if not started:
            audio.cancel()
            return ahead  # TTS failed: the turn runs at the endpoint, which reports it
        ahead.tts_ms = _ms_since(t1)
        ahead.prepared, ahead.audio = prepared, audio
        return ahead

    async def _run_dialogue(self, text: str, source: str, confidence, metrics: dict, eos_at: float) -> dict | None:
        """The turn through the session actor, its sentences spoken as they come."""
        started = time.monotonic()
        items = self.actor.run_turn.remote(text, source, confidence)
        try:
            head = await within(next_item(items), self._dl.dialogue_s, "dialogue")
        except Exception as exc:
            log.warning("call %s: dialogue failed: %r", self.session_id, exc)
            await self._error("dialogue_failed", "the agent could not answer this turn")
            await self._say_fallback(SORRY_DIALOGUE)
            return None
        if source != "reply":
            await self._send_text(event("transcript", turn_id=head["turn_id"], text=head["transcript"], final=True))
        summary: dict = {}
        ok = await self._reply(head["turn_id"], self._sentences_from(items, summary, metrics, started), metrics, eos_at)
        if not ok:
            await self._settle(resume=False)
            if source == "reply":
                await self._actor_call(self.actor.command_failed.remote("reply"), "command_failed")
            await self._error("dialogue_failed", "the agent could not answer this turn")
            await self._say_fallback(SORRY_DIALOGUE)
            return None
        return summary

    async def _sentences_from(
        self, items, summary: dict, metrics: dict | None = None, started: float = 0.0, deadline: float | None = None
    ):
        """Sentences from an actor reply stream, each within the dialogue deadline; the closing
        summary lands in `summary`."""
        async for item in items_within(items, deadline or self._dl.dialogue_s, "dialogue"):
            if "sentence" in item:
                if metrics is not None and "dialogue_first_sentence_ms" not in metrics:
                    metrics["dialogue_first_sentence_ms"] = _ms_since(started)
                yield item["sentence"]
            elif "turn_id" not in item:
                summary.update(item)
                self._note(item)

    # --- speaking ----------------------------------------------------------

    async def _reply(
        self,
        turn_id: int | None,
        sentences,
        metrics: dict | None,
        eos_at: float = 0.0,
        first_audio=None,
        tts_ms: float = 0.0,
    ) -> bool:
        """Speak a reply. A barge-in stops the audio, not the reply stream: every sentence and
        the summary are still collected, so the session's state stays whole. False when the
        dialogue stream failed."""
        queue: asyncio.Queue = asyncio.Queue()
        collected: list[str] = []
        failed = False

        async def produce():
            nonlocal failed
            try:
                async for sentence in sentences:
                    collected.append(sentence)
                    queue.put_nowait(sentence)
            except Exception as exc:
                log.warning("call %s: dialogue failed: %r", self.session_id, exc)
                failed = True
            finally:
                queue.put_nowait(None)

        async def queued():
            while (sentence := await queue.get()) is not None:
                yield sentence

        producer = asyncio.create_task(produce())
        self._mute, self._cut_at_s = False, None
        self._speech = Speech(turn_id, self._pacer.bytes_sent)
        self._speech_task = asyncio.create_task(self._speak_all(queued(), metrics, eos_at, first_audio, tts_ms))
        await asyncio.wait({self._speech_task})
        await producer
        if failed and not collected:
            return False
        speech = self._speech
        if self._cut_at_s is not None:  # barged in: the verdict waits for the caller's words
            heard_part, at = heard(collected, speech.durations, self._cut_at_s)
            self._interrupted = Interrupted(turn_id, collected, heard_part, at, metrics or {})
            return not failed
        if turn_id is not None:
            await self._finish_turn(turn_id, metrics)
        return not failed

    async def _speak_all(
        self, sentences, metrics: dict | None, eos_at: float, first_audio=None, tts_ms: float = 0.0
    ) -> None:
        index = 0
        async for sentence in sentences:
            self._speech.sentences.append(sentence)
            await self._speak(index, sentence, metrics, eos_at, first_audio if index == 0 else None, tts_ms)
            index += 1
        await self._pacer.drain()

    async def _speak(
        self, index: int, sentence: str, metrics: dict | None, eos_at: float, audio=None, tts_ms: float = 0.0
    ) -> None:
        speech = self._speech
        t0 = time.monotonic()
        first = True
        chunks = (
            audio
            if audio is not None
            else self._synthesize(sentence, self.params.output_sample_rate, self.params.locale, index == 0)
        )
        try:
            timed = chunks if audio is not None else first_within(chunks, self._dl.tts_first_audio_s, "tts first audio")
            async for chunk in timed:
                if first:
                    first = False
                    if metrics is not None and "tts_first_audio_ms" not in metrics:
                        metrics["tts_first_audio_ms"] = tts_ms if audio is not None else _ms_since(t0)
                    await self._agent("speaking")
                    await self._send_text(event("agent.text", turn_id=speech.turn_id, text=sentence))
                if metrics is not None and "eos_to_first_audio_ms" not in metrics:
                    metrics["eos_to_first_audio_ms"] = _ms_since(eos_at)
                speech.add_audio(index, len(chunk) / 2 / self.params.output_sample_rate)
                await self._pacer.send(chunk)
        except asyncio.CancelledError:
            stop_stream(chunks)  # barge-in: the TTS replica stops too (a cloud voice hangs up)
            raise
        except Exception as exc:
            stop_stream(chunks)
            log.warning("call %s: TTS failed for %r: %r", self.session_id, mask_pii(sentence)[:60], exc)
            if first:
                await self._send_text(event("agent.text", turn_id=speech.turn_id, text=sentence))
            await self._error("tts_failed", "speech synthesis failed; the sentence is in agent.text")

    async def _settle(self, resume: bool) -> None:
        """Decide a pending barge-in: resume the reply (false interruption) or keep in the
        history only what the caller heard."""
        cut, self._interrupted, self._settle_now = self._interrupted, None, False
        if cut is None:
            return
        if resume:
            log.info("call %s: false interruption, resuming turn %s", self.session_id, cut.turn_id)
            self._speech_task = None
            await self._reply(cut.turn_id, _aiter(cut.sentences[cut.resume_at :]), None)
            if self._interrupted is not None and self._interrupted.turn_id == cut.turn_id:  # cut again
                again = self._interrupted
                self._interrupted = Interrupted(
                    cut.turn_id,
                    cut.sentences,
                    cut.sentences[: cut.resume_at] + again.heard,
                    cut.resume_at + again.resume_at,
                    cut.metrics,
                )
            elif cut.turn_id is not None:
                await self._finish_turn(cut.turn_id, cut.metrics)
            return
        if cut.turn_id is not None:
            await self._finish_turn(cut.turn_id, cut.metrics, interrupted=True, heard_part=cut.heard)

    async def _finish_turn(
        self, turn_id: int, metrics: dict | None, interrupted: bool = False, heard_part: list[str] | None = None
    ) -> None:
        numbers = {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float))}
        if metrics:
            await self._send_text(event("turn.metrics", turn_id=turn_id, interrupted=interrupted, **metrics))
            for stage, ms in numbers.items():
                self._observe(stage, ms)
        await self._actor_call(self.actor.finish_turn.remote(turn_id, numbers, interrupted, heard_part), "finish_turn")

    async def _say_fallback(self, sentence: str) -> None:
        await self._reply(None, _aiter([sentence]), None)
        await self._settle(resume=False)
        await self._agent("listening")

    # --- timers and the session API ------------------------------------------

    async def _idle(self) -> None:
        """Check in after `idle_checkin_s` of silence on both sides; after `idle_max_checkins`
        unanswered check-ins, say goodbye. Never while anyone speaks or a reply is on its way."""
        quiet_since = time.monotonic()
        while True:
            await asyncio.sleep(0.25)
            active = (
                self._busy
                or self._turns.qsize()
                or self._endpointer.speaking
                or self._speaking()
                or self._interrupted
                or self._agent_state != "listening"
            )
            if active:
                quiet_since = time.monotonic()
                continue
            if time.monotonic() - quiet_since < self._settings.idle_checkin_s:
                continue
            quiet_since = time.monotonic()
            if self._idle_checks >= self._settings.idle_max_checkins:
                self._enqueue(TurnInput("goodbye", eos_at=quiet_since, text=IDLE_GOODBYE))
                return
            self._idle_checks += 1
            self._enqueue(TurnInput("checkin", eos_at=quiet_since, text=CHECK_IN))

    async def _commands(self) -> None:
        """Long-poll the session actor for session-API commands (say, reply, interrupt, close)."""
        while True:
            try:
                poll = self.actor.next_command.remote(self._dl.command_poll_s)
                cmd = await within(poll, self._dl.command_poll_s + self._dl.actor_call_s, "next_command")
            except StageTimeout:
                log.warning("call %s: the session actor did not answer its command poll", self.session_id)
                continue
            if cmd is None:
                continue
            op = cmd["op"]
            try:
                if op in ("say", "reply"):
                    self._enqueue(TurnInput(op, eos_at=time.monotonic(), text=cmd["text"]))
                elif op == "interrupt":
                    await self._interrupt()
                elif op == "close":
                    await self._interrupt()
                    self.finish(cmd.get("reason") or "closed")
            except ProtocolError as exc:  # the turn queue is full
                log.warning("call %s: session API %s refused: %s", self.session_id, op, exc.message)
                await self._actor_call(self.actor.command_failed.remote(op), "command_failed")

    async def _interrupt(self) -> None:
        """Stop the agent now, as a barge-in would, and keep only what was heard."""
        if self._speaking():
            self._settle_now = True
            await self._barge_in()


def _ms_since(t: float) -> float:
    return round((time.monotonic() - t) * 1000, 1)


async def _quietly(aw, seconds: float, what: str) -> None:
    """Closing steps that must not hold the line: bounded, failures only logged."""
    try:
        await asyncio.wait_for(aw, seconds)
    except Exception as exc:
        log.info("%s did not complete: %r", what, exc)


async def _aiter(items):
    for item in items:
        yield item
