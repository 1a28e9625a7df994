"""Who may open a call or reach the admin routes: pure checks, no I/O (the Gateway and
`serve_app/http_guard.py` apply them).

- Host allow-list: a page on a rebound DNS name (evil.example -> 127.0.0.1) sends its own
  Host, so answering only known hosts stops DNS rebinding of `/ready` and `/admin/*`.
- Origin allow-list at the WebSocket handshake: browsers always send `Origin`, so a foreign
  page is refused; clients with no `Origin` (SDKs, the CLI, telephony bridges) are not pages.
- New calls per key in a sliding window, with bounded memory: PIN guessing needs many calls.
- The admin bearer token, compared in constant time.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

Clock = Callable[[], float]


def default_hosts(port: int) -> frozenset[str]:
    """The loopback names, on any port: a rebinding page sends its own name, never these, and a
    local relay or port-forward (another port) still reaches the gateway."""
    return frozenset({"127.0.0.1:*", "localhost:*", "[::1]:*", f"127.0.0.1:{port}", f"localhost:{port}"})


def default_origins(port: int) -> frozenset[str]:
    """The page the gateway serves itself, at either loopback name."""
    return frozenset({f"http://127.0.0.1:{port}", f"http://localhost:{port}"})


def host_allowed(host: str | None, allowed: Iterable[str]) -> bool:
    """Exact match, case-insensitive, or `name:*` for that name on any port (or none); a
    missing Host header is refused (HTTP/1.1 requires it)."""
    if not host:
        return False
    host = host.strip().lower()
    names = {h.lower() for h in allowed}
    name = host.rsplit(":", 1)[0] if host.rsplit(":", 1)[-1].isdigit() and not host.endswith("]") else host
    return host in names or f"{name}:*" in names


def origin_allowed(origin: str | None, allowed: Iterable[str]) -> bool:
    """No Origin: not a browser page, allowed. `null` (sandboxed or file pages) is foreign."""
    if origin is None:
        return True
    return origin.strip().lower().rstrip("/") in {o.lower().rstrip("/") for o in allowed}


def bearer_ok(authorization: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time (no timing oracle)."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        given = ""
    return hmac.compare_digest(given.strip().encode(), token.encode()) and bool(token)


class SlidingWindowLimiter:
    """At most `limit` admitted events per key in any `window_s` seconds.

    Only admitted events are remembered (a refused one costs nothing), so a key holds at
    most `limit` timestamps, and at most `max_keys` keys are kept: idle keys are dropped
    first, then the least recently used ones. Memory stays bounded under a flood of ids."""

    def __init__(self, limit: int, window_s: float = 60.0, max_keys: int = 10_000, clock: Clock = time.monotonic):
        if limit < 1 or window_s <= 0 or max_keys < 1:
            raise ValueError("limit and max_keys must be >= 1 and window_s > 0")
        self.limit, self.window_s, self.max_keys, self._clock = limit, window_s, max_keys, clock
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._events)

    def allow(self, key: str) -> bool:
        """Admit and remember one event for `key`, or refuse it."""
        now = self._clock()
        self._evict(now)
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque()
        self._events.move_to_end(key)
        while events and events[0] <= now - self.window_s:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True

    def _evict(self, now: float) -> None:
        # Oldest-used first: stop at the first key still inside its window.
        while self._events:
            key, events = next(iter(self._events.items()))
            if events and events[-1] > now - self.window_s and len(self._events) < self.max_keys:
                break
            del self._events[key]


class CallRates:
    """New calls per address and per caller in a sliding minute: the 429 half of admission.

    The cluster's ledger actor holds one (`serve_app/capacity.py`), so every Gateway replica
    counts the same calls: counted per replica, a caller whose calls Serve spreads over N
    replicas would get N times the limit. The limits travel with each question, so a redeploy
    that changes them takes effect at once."""

    def __init__(self, per_caller: int, per_address: int, clock: Clock = time.monotonic):
        self.callers = SlidingWindowLimiter(per_caller, 60.0, clock=clock)
        self.addresses = SlidingWindowLimiter(per_address, 60.0, clock=clock)

    def admit(
        self, address: str | None, caller_id: str | None, per_caller: int | None = None, per_address: int | None = None
    ) -> tuple[int, str] | None:
        self.callers.limit = max(1, per_caller or self.callers.limit)
        self.addresses.limit = max(1, per_address or self.addresses.limit)
        # The address first: a flood of made-up caller ids from one place stops there.
        if address and not self.addresses.allow(address):
            return 429, "too many new calls from this address"
        if caller_id is not None and not self.callers.allow(caller_id):
            return 429, "too many new calls for this caller"
        return None


class Admission:
    """The handshake's decision for one new call: None (go on) or (HTTP status, reason).

    `rates` here is the replica's own count, for when the cluster's ledger does not answer."""

    def __init__(self, origins: Iterable[str], per_caller: int, per_address: int, clock: Clock = time.monotonic):
        self.origins = frozenset(origins)
        self.rates = CallRates(per_caller, per_address, clock=clock)

    def origin(self, origin: str | None) -> tuple[int, str] | None:
        return None if origin_allowed(origin, self.origins) else (403, "origin not allowed")

    def check(self, origin: str | None, address: str | None, caller_id: str) -> tuple[int, str] | None:
        return self.origin(origin) or self.rates.admit(address, caller_id)
