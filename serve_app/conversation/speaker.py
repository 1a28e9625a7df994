"""The agent's side of a call: a reply's playback and pacing, barge-in, the verdict on a cut
reply (resume after a false interruption, or keep what was heard), and each turn's close."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from common.pii import mask_pii
from models.protocol import ConnectParams, event
from serve_app.conversation.channel import Channel
from serve_app.conversation.pacer import AudioPacer
from serve_app.conversation.playback import Speech, heard
from serve_app.conversation.prefetch import stop_stream
from serve_app.conversation.turn_parts import Interrupted, aiter_of, ms_since
from serve_app.deadlines import Deadlines, first_within

log = logging.getLogger(__name__)

Synthesize = Callable[[str, int, str, bool], AsyncIterator[bytes]]  # text, sample rate, locale, first of a reply


class Speaker:
    def __init__(
        self,
        channel: Channel,
        params: ConnectParams,
        session_id: str,
        synthesize: Synthesize,
        deadlines: Deadlines,
        playback_lead_s: float,
        finish_turn: Callable,
        output_frame_ms: int = 100,
    ):
        self._channel, self.params, self.session_id = channel, params, session_id
        self._synthesize = synthesize
        self._dl = deadlines
        self._finish_turn = finish_turn  # (turn_id, metrics, interrupted=, heard_part=): the turn's record
        self.pacer = AudioPacer(
            channel.send_bytes, params.output_sample_rate, playback_lead_s, output_frame_ms, heard=channel.heard
        )
        self._speech: Speech | None = None  # the reply being spoken
        self.task: asyncio.Task | None = None
        self.cut_at_s: float | None = None  # playback position of the last barge-in
        self.interrupted: Interrupted | None = None
        self.settle_now = False  # interrupt() from the session API: no resume

    def speaking(self) -> bool:
        return self.task is not None and not self.task.done()

    async def reply(
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
        self._channel.mute, self.cut_at_s = False, None
        self._speech = Speech(turn_id, self.pacer.bytes_sent)
        self.task = asyncio.create_task(self._speak_all(queued(), metrics, eos_at, first_audio, tts_ms))
        try:
            await asyncio.wait({self.task})
            await producer
        except BaseException:  # the call is ending: the reply stream stops now, its record goes in order
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
            raise
        if failed and not collected:
            return False
        speech = self._speech
        if self.cut_at_s is not None:  # barged in: the verdict waits for the caller's words
            heard_part, at = heard(collected, speech.durations, self.cut_at_s)
            self.interrupted = Interrupted(turn_id, collected, heard_part, at, metrics or {})
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
        await self.pacer.drain()

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
                        metrics["tts_first_audio_ms"] = tts_ms if audio is not None else ms_since(t0)
                    await self._channel.agent("speaking")
                    await self._channel.send_text(event("agent.text", turn_id=speech.turn_id, text=sentence))
                if metrics is not None and "eos_to_first_audio_ms" not in metrics:
                    metrics["eos_to_first_audio_ms"] = ms_since(eos_at)
                speech.add_audio(index, len(chunk) / 2 / self.params.output_sample_rate)
                await self.pacer.send(chunk)
        except asyncio.CancelledError:
            stop_stream(chunks)  # barge-in: the TTS replica stops too (a cloud voice hangs up)
            raise
        except Exception as exc:
            stop_stream(chunks)
            log.warning("call %s: TTS failed for %r: %r", self.session_id, mask_pii(sentence)[:60], exc)
            if first:
                await self._channel.send_text(event("agent.text", turn_id=speech.turn_id, text=sentence))
            await self._channel.error("tts_failed", "speech synthesis failed; the sentence is in agent.text")

    def heard_at_drop(self) -> tuple[int, list[str]] | None:
        """The reply cut by a dropped socket: its turn and what the caller heard of it."""
        if self.interrupted is not None and self.interrupted.turn_id is not None:
            return self.interrupted.turn_id, self.interrupted.heard  # already cut by a barge-in
        speech = self._speech
        if speech is None or speech.turn_id is None or not self.speaking():
            return None
        return speech.turn_id, heard(speech.sentences, speech.durations, self.pacer.played_s(speech.start_bytes))[0]

    async def barge_in(self) -> None:
        """The caller talks over the agent: stop the audio at once and tell the client to drop
        what it buffered. Whether they really took the turn is decided when they stop."""
        speech = self._speech
        self._channel.mute = True  # before anything else: no frame may follow audio.clear
        self.cut_at_s = self.pacer.played_s(speech.start_bytes)
        self.pacer.clear()
        self.task.cancel()
        await self._channel.send_text(event("audio.clear", turn_id=speech.turn_id))
        await self._channel.agent("listening")

    async def interrupt(self) -> None:
        """Stop the agent now, as a barge-in would, and keep only what was heard."""
        if self.speaking():
            self.settle_now = True
            await self.barge_in()

    async def settle(self, resume: bool) -> None:
        """Decide a pending barge-in: resume the reply (false interruption) or keep in the
        history only what the caller heard."""
        cut, self.interrupted, self.settle_now = self.interrupted, None, False
        if cut is None:
            return
        if resume:
            log.info("call %s: false interruption, resuming turn %s", self.session_id, cut.turn_id)
            self.task = None
            await self.reply(cut.turn_id, aiter_of(cut.sentences[cut.resume_at :]), None)
            if self.interrupted is not None and self.interrupted.turn_id == cut.turn_id:  # cut again
                again = self.interrupted
                self.interrupted = Interrupted(
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

    async def say_fallback(self, sentence: str) -> None:
        await self.reply(None, aiter_of([sentence]), None)
        await self.settle(resume=False)
        await self._channel.agent("listening")
