"""Speech over the agent: is it the caller taking the turn, or a cough, a noise, an "mm-hmm"?

VAD alone cannot tell, so waiting for the caller to stop before deciding made every barge-in
slow and every backchannel clear the agent. Here the words decide as soon as there are some:
after `barge_in_min_ms` of speech the utterance so far is transcribed (a run-ahead request, never
shed); words clear the agent at once, a backchannel or noise lets it speak on, and if no
verdict came by `barge_in_confirm_ms` after the speech began the agent is cleared anyway (the
old resume-on-backchannel path then puts the reply back when the caller stops).
`barge_in_confirm_ms` 0 clears at `barge_in_min_ms` without asking.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from serve_app.conversation.playback import is_backchannel

log = logging.getLogger(__name__)

RECHECK_MS = 400  # more speech after a backchannel verdict: ask again (an "mm-hmm, actually...")


class BargeIn:
    def __init__(
        self,
        speaker,
        utterance: Callable[[], tuple[bytes, int]],
        transcribe: Callable[[bytes, int], Awaitable[dict]],
        min_ms: float,
        confirm_ms: float,
        session_id: str,
        clock=time.monotonic,
    ):
        self._speaker, self._utterance, self._transcribe = speaker, utterance, transcribe
        self._min_ms, self._confirm_ms, self.session_id, self._clock = min_ms, confirm_ms, session_id, clock
        self._task: asyncio.Task | None = None
        self._deadline: float | None = None  # clear at this time unless the words were a backchannel
        self._checked_ms = 0.0  # speech heard when the last check started
        self.words: bool | None = None  # the last verdict: True words, False backchannel, None none yet

    @classmethod
    def hearing(cls, speaker, listener, settings, clock=time.monotonic) -> BargeIn:
        """Checking what the call's listener hears, with the ASR it transcribes turns with."""
        endpointer, hearing = listener.endpointer, listener.hearing
        return cls(
            speaker,
            lambda: (endpointer.utterance_audio(), endpointer.position),
            lambda audio, end: hearing.transcribe(audio, end, "ahead"),
            settings.barge_in_min_ms,
            settings.barge_in_confirm_ms,
            listener.session_id,
            clock,
        )

    def reset(self) -> None:
        """A new utterance (or its end): the last one's check is over."""
        _cancel(self._task)
        self._task, self._deadline, self._checked_ms, self.words = None, None, 0.0, None

    async def on_speech(self, speech_ms: float) -> None:
        """After every frame while the caller speaks."""
        speaker = self._speaker
        if not speaker.speaking() or speaker.cut_at_s is not None or speech_ms < self._min_ms:
            return
        if not self._confirm_ms:
            await speaker.barge_in()
            return
        now = self._clock()
        if self._deadline is None:
            self._deadline = now + max(0.0, self._confirm_ms - speech_ms) / 1000
        if self._task is None or (self.words is False and speech_ms >= self._checked_ms + RECHECK_MS):
            self._check(speech_ms)
        if self.words or (self.words is None and now >= self._deadline):
            why = "words" if self.words else "no verdict in time"
            log.info("call %s: barge-in after %.0f ms of speech (%s)", self.session_id, speech_ms, why)
            await speaker.barge_in()

    def _check(self, speech_ms: float) -> None:
        _cancel(self._task)
        self._checked_ms = speech_ms
        audio, end_sample = self._utterance()
        self._task = asyncio.get_running_loop().create_task(self._verdict(audio, end_sample))

    async def _verdict(self, audio: bytes, end_sample: int) -> None:
        try:
            result = await self._transcribe(audio, end_sample)
        except Exception as exc:  # ASR slow or down: the deadline clears the agent
            log.info("call %s: barge-in check failed: %r", self.session_id, exc)
            return
        text = result["text"].strip()
        if text:  # nothing heard yet decides nothing: the deadline does
            self.words = not is_backchannel(text)


def _cancel(task: asyncio.Task | None) -> None:
    if task is not None and not task.done():
        task.cancel()
