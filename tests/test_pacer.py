import asyncio

from serve_app.conversation.pacer import AudioPacer


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


async def test_audio_is_never_more_than_max_lead_ahead(monkeypatch):
    clock = FakeClock()
    leads = []

    async def fake_sleep(seconds):
        clock.t += seconds

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    sent = []

    async def send(frame):
        leads.append(pacer.lead_s() + len(frame) / 32000)  # buffered once this frame lands
        sent.append(frame)

    pacer = AudioPacer(send, 16000, max_lead_s=0.4, frame_ms=40, clock=clock)
    pcm = bytes(16000 * 2 * 3)  # 3 s of audio
    start = clock.t
    await pacer.send(pcm)
    assert b"".join(sent) == pcm
    assert max(leads) <= 0.4 + 1e-9
    assert clock.t - start >= 3.0 - 0.4 - 0.04 - 1e-9  # paced at real time, not dumped at once
    await pacer.drain()
    assert pacer.lead_s() == 0.0 and clock.t - start >= 3.0 - 1e-9


async def test_clear_forgets_unplayed_audio(monkeypatch):
    clock = FakeClock()

    async def fake_sleep(seconds):
        clock.t += seconds

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)

    async def send(_):
        pass

    pacer = AudioPacer(send, 16000, max_lead_s=0.4, clock=clock)
    await pacer.send(bytes(32000))  # 1 s
    assert 0.3 < pacer.lead_s() <= 0.4 + 1e-9
    dropped = pacer.clear()
    assert 0.3 < dropped <= 0.4 + 1e-9 and pacer.lead_s() == 0.0
