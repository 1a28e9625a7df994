"""One load-test call over protocol v1 on blocking sockets: Locust's callers (gevent patches
threads, sleeps and sockets into greenlets) and the tests (plain threads) drive the same code.

A microphone thread sends a 20 ms frame at real time all call long, silence while the caller
is not speaking; a reader thread stamps every event and agent audio frame on arrival. Each turn
returns its figure in ms or raises TurnFailed (or NotABargeIn: the reply ended by itself before
the caller cut in, so there was nothing to stop). Voice-to-voice runs from the last voiced
sample sent, as loadtests/latency.py measures it: the silence a caller waits through counts.
"""

from __future__ import annotations

import bisect
import json
import threading
import time

import websocket

from common.audio import leading_silence_s, trailing_silence_s

RATE = 16000
FRAME_BYTES = RATE * 20 // 1000 * 2
CUT_IN_AFTER_S = 0.5  # reply audio heard before the caller talks over it
STOP_DEADLINE_S = 1.5  # caller speech this long with the reply still playing and no audio.clear: a failure


class TurnFailed(Exception):
    pass


class NotABargeIn(Exception):
    pass


class Call:
    def __init__(self, url: str):
        self.url = url
        self.events: list[tuple[float, dict]] = []
        self.timeline: list[tuple[float, str]] = []  # (arrival, "audio" or the event type)
        self.audio: list[float] = []  # arrival of each agent audio frame
        self.closed = False
        self._cond = threading.Condition()
        self._speech = bytearray()
        self._spoken: tuple[float, float] | None = None  # the last utterance's first and last frame sent
        self.ws: websocket.WebSocket | None = None

    # -- the line --------------------------------------------------------------------------
    def connect(self, timeout: float = 30) -> float:
        """Dial, wait for the greeting's first audio byte and its end; returns that first byte's ms."""
        t0 = time.monotonic()
        try:
            self.ws = websocket.create_connection(self.url, timeout=timeout, enable_multithread=True)
        except Exception as exc:
            raise TurnFailed(f"connect: {exc}") from exc
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._mic, daemon=True).start()
        self._wait(lambda: self._first("session.started", 0), timeout, "session.started")
        first = self._wait(lambda: self._audio_after(t0), timeout, "greeting")
        self._wait(lambda: self._state_after(first) == "listening", timeout, "end of the greeting")
        return (first - t0) * 1000

    def hangup(self, timeout: float = 10) -> None:
        try:
            if not self.closed and self.ws is not None:
                self.ws.send(json.dumps({"type": "hangup"}))
                with self._cond:
                    self._cond.wait_for(lambda: self.closed, timeout)
        except Exception:
            pass  # gone already: nothing more to hang up
        finally:
            self.closed = True
            if self.ws is not None:
                self.ws.close(timeout=1)
                self.ws.shutdown()  # after the server's close the socket is still open: end it

    # -- turns -----------------------------------------------------------------------------
    def voice_turn(self, pcm: bytes, timeout: float = 30) -> float:
        """Speak, then keep the line open until the agent has answered; voice-to-voice ms."""
        mark = len(self.events)
        _, end = self.speak(pcm)
        last_voiced = end - trailing_silence_s(pcm, RATE)
        return self._answer_ms(mark, last_voiced, timeout)

    def typed_turn(self, text: str, timeout: float = 30) -> float:
        """A typed turn (protocol `text`): sent to the first agent audio byte, ms."""
        mark, sent = len(self.events), time.monotonic()
        self.ws.send(json.dumps({"type": "text", "text": text}))
        return self._answer_ms(mark, sent, timeout)

    def barge_in(self, prompt: str, pcm: bytes, timeout: float = 30) -> tuple[float, float | TurnFailed]:
        """Ask `prompt` by text, talk over the reply once its audio arrives: (ms from the first
        voiced sample to audio.clear, voice-to-voice ms of the words that cut in or why they
        went unanswered)."""
        sent = time.monotonic()
        self.ws.send(json.dumps({"type": "text", "text": prompt}))
        first = self._wait(lambda: self._audio_after(sent), timeout, "reply")
        time.sleep(CUT_IN_AFTER_S)
        mark = len(self.events)
        start, end = self.speak(pcm)
        onset, last_voiced = start + leading_silence_s(pcm, RATE), end - trailing_silence_s(pcm, RATE)
        try:
            answer: float | TurnFailed = self._answer_ms(mark, last_voiced, timeout)
        except TurnFailed as exc:
            answer = exc
        clear = self._first("audio.clear", mark)
        if clear is None:
            ended = next((at for at, e in self.events if at > first and e.get("state") == "listening"), None)
            if ended is not None and ended < onset + STOP_DEADLINE_S:
                raise NotABargeIn(f"the reply ended {ended - first:.1f} s after its first audio")
            raise TurnFailed("the agent talked over the caller: no audio.clear")
        nxt = next((at for at, k in self.timeline if at > clear and k == "agent.text"), float("inf"))
        late = sum(1 for at, k in self.timeline if clear < at < nxt and k == "audio")
        if late:
            raise TurnFailed(f"{late} audio frames of the cut reply after audio.clear")
        return (clear - onset) * 1000, answer

    def speak(self, pcm: bytes) -> tuple[float, float]:
        """Hand an utterance to the microphone; returns when its first and last frames left."""
        with self._cond:
            self._spoken = None
            self._speech[:] = pcm
            self._cond.wait_for(lambda: self._spoken is not None or self.closed)
        if self._spoken is None:
            raise TurnFailed(self._ended())
        return self._spoken

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)  # the microphone keeps sending silence

    # -- inside ----------------------------------------------------------------------------
    def _answer_ms(self, mark: int, since: float, timeout: float) -> float:
        """The agent took up a turn after `since` and went back to listening: its first audio, ms."""

        def answered():
            thinking = next((at for at, e in self.events[mark:] if e.get("state") == "thinking" and at >= since), None)
            return thinking is not None and self._state_after(thinking) == "listening"

        self._wait(answered, timeout, "answer")
        errors = [e["code"] for _, e in self.events[mark:] if e["type"] == "error"]
        if errors:
            raise TurnFailed(f"error events {errors}")
        first = self._audio_after(since)
        if first is None:
            raise TurnFailed("answered without audio")
        return (first - since) * 1000

    def _audio_after(self, since: float) -> float | None:
        i = bisect.bisect_left(self.audio, since)  # predicates run at every frame: no scan of the whole call
        return self.audio[i] if i < len(self.audio) else None

    def _state_after(self, at: float) -> str | None:
        states = [e["state"] for t, e in self.events if e["type"] == "agent.state" and t >= at]
        return states[-1] if states else None

    def _first(self, kind: str, mark: int) -> float | None:
        return next((at for at, e in self.events[mark:] if e["type"] == kind), None)

    def _ended(self) -> str:
        ended = [e for _, e in self.events if e["type"] == "session.ended"]
        return f"call ended: {ended[-1].get('reason') if ended else 'socket closed'}"

    def _wait(self, found, timeout: float, what: str):
        with self._cond:
            result = self._cond.wait_for(lambda: found() or self.closed, timeout)
            if self.closed and not found():
                raise TurnFailed(f"waiting for the {what}: {self._ended()}")
            if not result:
                raise TurnFailed(f"no {what} within {timeout:.0f} s")
            return found()

    def _read(self) -> None:
        try:
            while True:
                opcode, data = self.ws.recv_data()
                now = time.monotonic()
                with self._cond:
                    if opcode == websocket.ABNF.OPCODE_BINARY:
                        self.timeline.append((now, "audio"))
                        self.audio.append(now)
                    elif opcode == websocket.ABNF.OPCODE_TEXT:
                        event = json.loads(data)
                        self.events.append((now, event))
                        self.timeline.append((now, event["type"]))
                    else:
                        break
                    self._cond.notify_all()
        except Exception:
            pass  # closed by either side: the call is over
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def _mic(self) -> None:
        silence, next_at, started = bytes(FRAME_BYTES), time.monotonic(), None
        while not self.closed:
            with self._cond:
                chunk = bytes(self._speech[:FRAME_BYTES])
                del self._speech[:FRAME_BYTES]
            try:
                self.ws.send_binary(chunk or silence)
            except Exception:
                with self._cond:
                    self.closed = True
                    self._cond.notify_all()
                return
            now = time.monotonic()
            if chunk:
                started = started or now
                if not self._speech:
                    with self._cond:
                        self._spoken, started = (started, now), None
                        self._cond.notify_all()
            next_at = max(next_at + 0.02, time.monotonic() - 0.1)  # late under load: catch up, no burst
            time.sleep(max(0.0, next_at - time.monotonic()))
