"""The pacer on a fake clock: message sizes, real-time pacing, a barge-in's stop, and what the
caller heard counted in time, whatever the message size."""

import asyncio

import pytest

from serve_app.conversation.pacer import AudioPacer

RATE = 16000


_real_sleep = asyncio.sleep


class FakeClock:
    """Time moves only when the test moves it; a sleeping pacer wakes once it has."""

    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t

    async def sleep(self, seconds):
        until = self.t + seconds
        while self.t < until - 1e-9:
            await _real_sleep(0)

    async def run_until(self, t: float, step: float = 0.001):
        while self.t < t - 1e-9:
            self.t = min(t, self.t + step)
            for _ in range(3):
                await _real_sleep(0)


@pytest.fixture
def clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(asyncio, "sleep", clock.sleep)
    return clock


def caller_heard(arrivals: list[tuple[float, float]], t: float) -> float:
    """An ideal client player: each message plays from its arrival or the previous one's end."""
    heard, end = 0.0, float("-inf")
    for at, dur in arrivals:
        start = max(at, end)
        heard += min(max(t - start, 0.0), dur)
        end = start + dur
    return heard


def seconds(n: float) -> bytes:
    return bytes(int(RATE * n) * 2)


async def paced(clock, pacer, pcm: bytes, until: float | None = None) -> asyncio.Task:
    """Send through the pacer while the clock runs (to `until`, or until all is sent)."""
    task = asyncio.create_task(pacer.send(pcm))
    await _real_sleep(0)  # its first message goes now, before the clock moves
    end = clock.t + (until if until is not None else 60.0)
    while not task.done() and clock.t < end - 1e-9:
        await clock.run_until(clock.t + 0.001)
    return task


@pytest.mark.parametrize("frame_ms", [20, 40, 100, 200])
async def test_audio_goes_in_messages_of_the_frame_size_never_more_than_max_lead_ahead(clock, frame_ms):
    leads, sizes = [], []

    async def send(frame):
        leads.append(pacer.lead_s() + len(frame) / 2 / RATE)  # buffered once this message lands
        sizes.append(len(frame))

    pacer = AudioPacer(send, RATE, max_lead_s=0.4, frame_ms=frame_ms, clock=clock)
    start = clock.t
    pcm = seconds(3.01)
    await paced(clock, pacer, pcm)
    frame_bytes = RATE * frame_ms // 1000 * 2
    assert sizes[:-1] == [frame_bytes] * (len(sizes) - 1) and 0 < sizes[-1] <= frame_bytes
    assert sum(sizes) == len(pcm) and len(sizes) == -(-len(pcm) // frame_bytes)  # fewer messages, none lost
    assert max(leads) <= 0.4 + 1e-9
    assert clock.t - start >= 3.01 - 0.4 - 1e-9  # paced at real time, not dumped at once
    await clock.run_until(start + 3.01)
    assert pacer.lead_s() == 0.0


async def test_the_first_message_goes_at_once_even_with_no_lead_allowed(clock):
    sent_at = []

    async def send(frame):
        sent_at.append(clock.t)

    pacer = AudioPacer(send, RATE, max_lead_s=0.0, frame_ms=100, clock=clock)
    start = clock.t
    await paced(clock, pacer, seconds(0.3))
    assert [round(t - start, 6) for t in sent_at] == [0.0, 0.1, 0.2]  # each as the one before has played


async def test_clear_forgets_unplayed_audio(clock):
    async def send(_):
        pass

    pacer = AudioPacer(send, RATE, max_lead_s=0.4, frame_ms=100, clock=clock)
    await paced(clock, pacer, seconds(1))
    assert 0.3 <= pacer.lead_s() <= 0.4 + 1e-9
    dropped = pacer.clear()
    assert 0.3 <= dropped <= 0.4 + 1e-9 and pacer.lead_s() == 0.0


@pytest.mark.parametrize("frame_ms", [20, 100, 200])
@pytest.mark.parametrize("cut_after_s", [0.05, 0.37, 1.234, 2.5])
async def test_a_barge_in_stops_the_messages_and_heard_is_what_the_caller_played(clock, frame_ms, cut_after_s):
    """A cut part-way through a message: heard is what a player fed these messages has played by
    then (to the clock's 1 ms step), not a count of messages."""
    arrivals = []

    async def send(frame):
        arrivals.append((clock.t, len(frame) / 2 / RATE))

    pacer = AudioPacer(send, RATE, max_lead_s=0.4, frame_ms=frame_ms, clock=clock)
    start_bytes = pacer.bytes_sent
    task = await paced(clock, pacer, seconds(4), until=cut_after_s)
    heard = pacer.played_s(start_bytes)
    task.cancel()  # what barge_in does: the reply's task stops, no message follows
    await asyncio.gather(task, return_exceptions=True)
    n = len(arrivals)
    dropped = pacer.clear()
    assert heard == pytest.approx(caller_heard(arrivals, clock.t), abs=1e-6)
    assert heard == pytest.approx(cut_after_s, abs=1e-6)  # playing all along: every moment was heard
    assert heard + dropped == pytest.approx(sum(d for _, d in arrivals))  # heard plus dropped is all sent
    await clock.run_until(clock.t + 1.0)
    assert len(arrivals) == n  # nothing after the stop


async def test_heard_counts_an_earlier_stretch_whole_across_a_pause(clock):
    """TTS was slow between sentences: the player ran dry and waited; the count stays exact."""
    arrivals = []

    async def send(frame):
        arrivals.append((clock.t, len(frame) / 2 / RATE))

    pacer = AudioPacer(send, RATE, max_lead_s=0.4, frame_ms=100, clock=clock)
    await paced(clock, pacer, seconds(0.5))
    await clock.run_until(clock.t + 2.0)
    await paced(clock, pacer, seconds(0.75))
    for _ in range(4):
        await clock.run_until(clock.t + 0.037)
        assert pacer.played_s(0) == pytest.approx(caller_heard(arrivals, clock.t), abs=1e-6)
