"""Run-ahead: when the caller pauses (`preemptive_ms`), the turn is run ahead: ASR on the audio
so far, then the dialogue (only if it needs no tool: nothing that cannot be taken back), then
the first sentence's audio, all held until the endpoint confirms the caller stopped. If they
go on, it is thrown away."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from models.protocol import ConnectParams
from serve_app.conversation.channel import Channel
from serve_app.conversation.hearing import Hearing
from serve_app.conversation.playback import is_backchannel
from serve_app.conversation.prefetch import Prefetch
from serve_app.conversation.session_client import SessionClient
from serve_app.conversation.turn_parts import Ahead, discard_ahead, ms_since
from serve_app.deadlines import Deadlines, StageTimeout, within

log = logging.getLogger(__name__)


class AheadRunner:
    def __init__(
        self,
        channel: Channel,
        hearing: Hearing,
        partial_event: Callable[[str], str],
        session: SessionClient,
        synthesize,
        params: ConnectParams,
        session_id: str,
        deadlines: Deadlines,
        on_transcript: Callable[[str | None], None] = lambda text: None,
    ):
        self._channel, self._hearing, self._partial_event = channel, hearing, partial_event
        self._session, self._synthesize, self.params, self.session_id = session, synthesize, params, session_id
        self._dl = deadlines
        self._on_transcript = on_transcript  # the end-of-turn decision reads it (Call)
        self.task: asyncio.Task | None = None

    def start(self, audio: bytes, end_sample: int, reply_too: bool) -> None:
        self.cancel()
        self.task = asyncio.create_task(self._run(audio, end_sample, reply_too))

    def cancel(self) -> None:
        discard_ahead(self.task)
        self.task = None

    def take(self) -> asyncio.Task | None:
        """The run-ahead for the turn that just ended: from here on the turn owns it."""
        task, self.task = self.task, None
        return task

    async def _run(self, audio: bytes, end_sample: int, reply_too: bool) -> Ahead:
        """Transcribe the utterance so far; if allowed, prepare the reply and its first audio."""
        try:
            result = await self._hearing.transcribe(audio, end_sample, "ahead")
        except Exception:
            self._on_transcript(None)  # no verdict is coming: the fixed silence ends this pause
            raise
        ahead = Ahead(result["text"], result["confidence"], time.monotonic(), provider=result["provider"])
        self._on_transcript(ahead.text)
        if ahead.text and not is_backchannel(ahead.text):
            await self._channel.send_text(self._partial_event(ahead.text))
        if not reply_too or is_backchannel(ahead.text):
            log.debug("call %s: transcript only ahead (reply_too=%s)", self.session_id, reply_too)
            return ahead
        t0 = time.monotonic()
        try:
            prepared = await within(self._session.prepare(ahead.text), self._dl.dialogue_s, "prepare_turn")
        except Exception as exc:
            log.warning("call %s: reply not prepared ahead: %r", self.session_id, exc)
            return ahead  # the turn runs at the endpoint, which reports any failure
        if prepared is None or not prepared.sentences:
            why = "refused" if prepared is None else "no sentence"
            log.info("call %s: reply not prepared ahead (%s)", self.session_id, why)
            return ahead
        ahead.dialogue_ms = ms_since(t0)
        t1 = time.monotonic()
        audio = Prefetch(
            self._synthesize(prepared.sentences[0], self.params.output_sample_rate, self.params.locale, True)
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
        ahead.tts_ms = ms_since(t1)
        ahead.prepared, ahead.audio = prepared, audio
        return ahead
