"""The state parts in Redis, for a cluster: every node's Dialogue replicas share them.

Layout (the README's "State store" section): `voice:journal:<key>` and `voice:cache:<key>`
are JSON strings with an expiry; `voice:customer:<id>` is a hash renewed for its TTL at each
write; the audit trail's stream is in `redis_audit.py`.
What reads before it writes runs as one Lua script, so two nodes never interleave.
"""

from __future__ import annotations

import json
import time

import redis

from deployments.state.parts import CustomerState, JournalEntry, PinAttempt, PinLockout

PREFIX = "voice:"

# KEYS[1]: the journal key. Only a pending claim is dropped: a done entry stays.
_ABANDON = """
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v)['status'] == 'pending' then redis.call('DEL', KEYS[1]) end
return 0
"""
# decide_pin (parts.py) in Lua. KEYS[1]: the customer's hash. ARGV: matched (1/0), now, max
# failures, window s, the lock's end if this attempt locks, ttl s, now ms. Times stay the
# strings Python wrote (exact); failures are one space-separated field.
_PIN_ATTEMPT = """
local now = tonumber(ARGV[2])
local locked = redis.call('HGET', KEYS[1], 'locked_until')
if locked and locked ~= '' and tonumber(locked) > now then return {'locked', '0', locked} end
if ARGV[1] == '1' then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], 'pin_failures', '', 'updated_at_ms', ARGV[7])
    redis.call('EXPIRE', KEYS[1], ARGV[6])
  end
  return {'ok', '0', ''}
end
local kept = {}
for t in string.gmatch(redis.call('HGET', KEYS[1], 'pin_failures') or '', '%S+') do
  if tonumber(t) > now - tonumber(ARGV[4]) then table.insert(kept, t) end
end
table.insert(kept, ARGV[2])
local result = {'wrong', tostring(#kept), ''}
if #kept >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'pin_failures', '', 'locked_until', ARGV[5])
  result = {'locked', tostring(#kept), ARGV[5]}
else
  redis.call('HSET', KEYS[1], 'pin_failures', table.concat(kept, ' '))
end
redis.call('HSET', KEYS[1], 'updated_at_ms', ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[6])
return result
"""
# KEYS[1]: the customer's hash. ARGV: ttl s, now ms. Answers the hash as it was.
_UNLOCK = """
local was = redis.call('HGETALL', KEYS[1])
if #was == 0 then return was end
redis.call('HSET', KEYS[1], 'locked_until', '', 'pin_failures', '', 'updated_at_ms', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return was
"""


def connect(url: str, timeout_s: float = 2.0) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    client.ping()  # fail at start-up, naming the server, not at the first tool call
    return client


def _now_ms() -> int:
    return int(time.time() * 1000)


class RedisWorkflow:
    def __init__(self, client: redis.Redis, ttl_s: float):
        self._r, self._ttl_s = client, max(1, int(ttl_s))
        self._abandon = client.register_script(_ABANDON)

    def begin(self, key: str) -> JournalEntry | None:
        pending = json.dumps({"status": "pending", "at_ms": _now_ms()})
        for _ in range(3):  # a claim abandoned between our SET and GET is claimed again
            if self._r.set(PREFIX + "journal:" + key, pending, nx=True, ex=self._ttl_s):
                return None
            if (found := self.get(key)) is not None:
                return found
        raise RuntimeError(f"journal key {key} is claimed and abandoned over and over")

    def get(self, key: str) -> JournalEntry | None:
        raw = self._r.get(PREFIX + "journal:" + key)
        if raw is None:
            return None
        v = json.loads(raw)
        return JournalEntry(v["status"], v.get("result"), v["at_ms"])

    def finish(self, key: str, result: dict) -> None:
        done = json.dumps({"status": "done", "result": result, "at_ms": _now_ms()})
        self._r.set(PREFIX + "journal:" + key, done, ex=self._ttl_s)

    def abandon(self, key: str) -> None:
        self._abandon(keys=[PREFIX + "journal:" + key])


class RedisCache:
    def __init__(self, client: redis.Redis):
        self._r = client

    def get(self, key: str) -> dict | None:
        raw = self._r.get(PREFIX + "cache:" + key)
        return json.loads(raw) if raw is not None else None

    def put(self, key: str, value: dict, ttl_s: float) -> None:
        self._r.set(PREFIX + "cache:" + key, json.dumps(value), px=max(1, int(ttl_s * 1000)))


class RedisCustomers:
    def __init__(self, client: redis.Redis, ttl_s: float):
        self._r, self._ttl_s = client, max(1, int(ttl_s))
        self._pin = client.register_script(_PIN_ATTEMPT)
        self._unlock = client.register_script(_UNLOCK)

    def pin_attempt(self, customer_id: str, matched: bool, now: float, policy: PinLockout) -> PinAttempt:
        args = [int(matched), repr(now), policy.max_failures, repr(policy.window_s), repr(now + policy.lockout_s)]
        raw = self._pin(keys=[self._key(customer_id)], args=[*args, self._ttl_s, _now_ms()])
        outcome, failures, until = (x.decode() for x in raw)
        locked_now = outcome == "locked" and failures != "0"
        return PinAttempt(outcome, int(failures), float(until) if until else None, locked_now)

    def get(self, customer_id: str) -> CustomerState | None:
        return _state(customer_id, self._r.hgetall(self._key(customer_id)))

    def unlock(self, customer_id: str) -> CustomerState | None:
        raw = self._unlock(keys=[self._key(customer_id)], args=[self._ttl_s, _now_ms()])
        return _state(customer_id, dict(zip(raw[::2], raw[1::2])))

    def remember(self, customer_id: str, last_order: str | None = None, locale: str | None = None) -> None:
        fields = {"updated_at_ms": _now_ms(), "last_order": last_order, "locale": locale}
        with self._r.pipeline() as pipe:  # MULTI/EXEC: the fields and their expiry together
            pipe.hset(self._key(customer_id), mapping={k: v for k, v in fields.items() if v})
            pipe.expire(self._key(customer_id), self._ttl_s)
            pipe.execute()

    def forget(self, customer_id: str) -> bool:
        return bool(self._r.delete(self._key(customer_id)))

    @staticmethod
    def _key(customer_id: str) -> str:
        return PREFIX + "customer:" + customer_id


def _state(customer_id: str, raw: dict) -> CustomerState | None:
    if not raw:
        return None
    v = {k.decode(): x.decode() for k, x in raw.items()}
    return CustomerState(
        customer_id,
        float(v["locked_until"]) if v.get("locked_until") else None,
        tuple(float(t) for t in v.get("pin_failures", "").split()),
        v.get("last_order") or None,
        v.get("locale") or None,
        int(v.get("updated_at_ms", 0)),
    )
