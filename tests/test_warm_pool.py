"""The warm pool's sizing and pacing, admission only with a warm actor, and load shedding's
hysteresis: plain logic on a fake clock, and the pool's refill with fake actors (no Ray)."""

from __future__ import annotations

import asyncio

import pytest

from common.config import ConfigError, load_settings
from serve_app.load_shed import LoadShedder
from serve_app.session_pool import NoWarmSession, SessionPool
from serve_app.warm_sizing import ArrivalRate, WarmSizer
from tests.call_fakes import FakeClock


def test_the_arrival_rate_settles_at_the_steady_rate_and_fades_after():
    clock = FakeClock()
    rate = ArrivalRate(30.0, clock)
    for _ in range(300):  # 2 calls a second for 150 s
        clock.t += 0.5
        rate.arrive()
    assert 1.9 < rate.per_s() < 2.1
    clock.t += 30
    assert 0.7 < rate.per_s() < 0.8  # one window later: down by e, not gone at once


def test_the_target_covers_the_arrivals_during_a_spawn_within_base_and_cap():
    clock = FakeClock()
    sizer = WarmSizer(base=2, cap=8, window_s=30, margin=1.5, clock=clock)
    assert sizer.target() == 2  # no arrivals: the base
    for _ in range(60):  # 1 call a second
        clock.t += 1
        sizer.arrive()
    for _ in range(10):
        sizer.spawned(3.0)  # spawns now take about 3 s
    assert 2.9 < sizer.spawn_s < 3.0
    assert sizer.target() == round(sizer.rate.per_s() * sizer.spawn_s * 1.5)  # 0.86/s x 2.97 s x 1.5: 4
    assert sizer.target() == 4
    for _ in range(300):  # 10 calls a second: capped
        clock.t += 0.1
        sizer.arrive()
    assert sizer.target() == 8
    clock.t += 600  # quiet for ten minutes: back to the base
    assert sizer.target() == 2


def test_spawns_pause_only_while_calls_talk_and_nobody_waits():
    sizer = WarmSizer(base=1, cap=4, pause_s=0.5)
    assert sizer.pause_s(active_calls=0, waiting=0) == 0.0  # idle box: nothing to starve
    assert sizer.pause_s(active_calls=3, waiting=0) == 0.5
    assert sizer.pause_s(active_calls=3, waiting=1) == 0.0  # a caller's admission is at stake


def test_shedding_starts_above_and_stops_only_below_the_lower_threshold():
    clock = FakeClock()
    shed = LoadShedder(250, 100, 2500, 1800, window_s=30, min_turns=3, clock=clock)
    for ms in (900, 1000, 1100):
        shed.turn(ms)
    assert not shed.shedding
    for ms in (2600, 2700, 2800, 2900, 3000, 3100):
        shed.turn(ms)
    assert shed.shedding  # turn first-audio P95 over 2500
    clock.t += 31
    for ms in (2000, 2100, 2200):  # under 2500 but over 1800: still shedding (hysteresis)
        shed.turn(ms)
    assert shed.shedding
    clock.t += 31
    for ms in (1000, 1200, 1300):
        shed.turn(ms)
    assert not shed.shedding
    shed.lag(400)  # one slow tick among fast ones is not saturation...
    for _ in range(40):
        shed.lag(5)
    assert not shed.shedding
    for _ in range(10):  # ...a loop late for a second is
        shed.lag(400)
    assert shed.shedding
    clock.t += 6  # the lag window passes: back below 100 ms (none measured counts as none)
    assert not shed.shedding


def test_too_few_turns_and_disabled_signals_never_shed():
    clock = FakeClock()
    shed = LoadShedder(0, 0, 2500, 1800, min_turns=5, clock=clock)
    for _ in range(4):
        shed.turn(9000)
    shed.lag(10_000)  # loop lag off (0)
    assert not shed.shedding


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"VOICE_WARM_SESSIONS": "4", "VOICE_WARM_SESSIONS_MAX": "3"}, "VOICE_WARM_SESSIONS_MAX"),
        ({"VOICE_SHED_TURN_P95_MS": "1000", "VOICE_SHED_TURN_P95_RESUME_MS": "1000"}, "VOICE_SHED_TURN_P95_RESUME_MS"),
        ({"VOICE_WARM_WAIT_MS": "-1"}, "VOICE_WARM_WAIT_MS"),
    ],
)
def test_a_bad_warm_pool_or_shedding_setting_fails_naming_it(monkeypatch, env, variable):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


class Actor:
    class ping:
        @staticmethod
        def remote():
            return asyncio.sleep(0, 1)

    def __init__(self, n: int):
        self.n = n
        self.renew = self  # lease renewals: a no-op

    def remote(self):
        return None


class Spawner:
    """Spawns that take `seconds` each, counted, at most one at a time (the pace)."""

    def __init__(self, seconds: float):
        self.seconds, self.made, self.running, self.most_at_once = seconds, [], 0, 0

    async def __call__(self):
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(self.seconds)
            self.made.append(Actor(len(self.made)))
            return self.made[-1]
        finally:
            self.running -= 1


def _pool(spawn_s: float, base: int, cap: int, wait_s: float, monkeypatch) -> tuple[SessionPool, Spawner, list]:
    killed = []
    monkeypatch.setattr("serve_app.warm_supply.ray.kill", lambda actor, no_restart: killed.append(actor))
    pool = SessionPool(lambda: None, base, max_active=10, sizer=WarmSizer(base, cap, pause_s=0.0), wait_s=wait_s)
    spawner = Spawner(spawn_s)
    pool._spawn = spawner
    return pool, spawner, killed


async def _stop(pool: SessionPool) -> None:
    for task in (pool._refill_task, pool._renew_task):
        if task is not None:
            task.cancel()


async def test_a_call_beyond_the_warm_pool_waits_for_the_refill_never_spawns_inline(monkeypatch):
    pool, spawner, _ = _pool(0.05, base=1, cap=1, wait_s=1.0, monkeypatch=monkeypatch)
    pool.start()
    await asyncio.sleep(0.1)
    assert pool.warm == 1
    first = await pool.acquire()
    second = await pool.acquire()  # none warm, a call active: the refill's next actor, within the wait
    assert first is spawner.made[0] and second is spawner.made[1]
    await asyncio.sleep(0.1)
    assert pool.warm == 1 and spawner.most_at_once == 1  # topped up again, one spawn at a time
    await _stop(pool)


async def test_with_no_warm_actor_in_time_the_call_is_refused_and_its_line_freed(monkeypatch):
    pool, spawner, _ = _pool(0.5, base=1, cap=1, wait_s=0.05, monkeypatch=monkeypatch)
    pool.active = 1  # another call talks (its actor taken): no inline spawn
    with pytest.raises(NoWarmSession, match="50 ms"):
        await pool.acquire()
    assert pool.active == 1
    await asyncio.sleep(0.6)  # the refill's spawn lands in the pool for the next caller
    assert pool.warm == 1 and len(spawner.made) == 1
    await _stop(pool)


async def test_the_first_call_on_an_idle_replica_may_spawn_inline(monkeypatch):
    pool, spawner, _ = _pool(0.01, base=0, cap=0, wait_s=0.0, monkeypatch=monkeypatch)
    actor = await pool.acquire()  # nothing else talks, nothing warm: spawned on the call's path
    assert actor is spawner.made[0] and pool.active == 1
    await _stop(pool)


async def test_the_pool_grows_with_the_arrival_rate_and_trims_back(monkeypatch):
    pool, spawner, killed = _pool(0.01, base=1, cap=4, wait_s=1.0, monkeypatch=monkeypatch)
    clock = FakeClock()
    pool.sizer.rate = ArrivalRate(30.0, clock)
    pool.sizer.spawn_s = 3.0
    monkeypatch.setattr(pool.sizer, "spawned", lambda seconds: None)  # these spawns are instant; keep the box's 3 s
    pool.start()
    for _ in range(30):  # a call a second for 30 s: 0.63/s x 3 s x 1.5 -> 3 warm
        clock.t += 1
        actor = await pool.acquire()
        pool.release(actor)
    await asyncio.sleep(0.3)
    assert pool.warm == 3
    clock.t += 300
    pool._poke.set()
    for _ in range(50):
        if pool.warm == 1:
            break
        await asyncio.sleep(0.05)
    assert pool.warm == 1 and len(killed) >= 30 + 2  # every released call's actor, then two trimmed
    await _stop(pool)
