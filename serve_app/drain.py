"""Noticing that this Gateway replica is being stopped (a redeploy, a downscale, a new version).

Serve stops a replica by waiting for its ongoing requests (up to `graceful_shutdown_timeout_s`)
and only then runs its destructor, so a replica whose requests are minutes-long calls has to
find out for itself: it asks the Serve controller, about once a second, what state it is in,
and a replica marked STOPPING (or gone from the list) drains (serve_app/calls.py). The proxy
already routes new calls elsewhere; the drain moves the live ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[bool]]  # True: this replica is being stopped


class DrainWatch:
    def __init__(self, stopping: Probe, on_drain: Callable[[], None], every_s: float = 1.0):
        self._stopping, self._on_drain, self._every_s = stopping, on_drain, every_s
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            try:
                stopping = await asyncio.wait_for(self._stopping(), timeout=max(1.0, 2 * self._every_s))
            except Exception as exc:  # the controller busy or restarting: ask again
                log.debug("drain probe failed: %r", exc)
                continue
            if stopping:
                self._on_drain()
                return


def serve_probe() -> Probe:
    """This replica's state as the Serve controller has it."""
    import ray
    from ray import serve
    from ray.serve._private.common import ReplicaState
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    ctx = serve.get_replica_context()
    controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    seen = False

    async def stopping() -> bool:
        nonlocal seen
        details = await controller.get_deployment_details.remote(ctx.app_name, ctx.deployment)
        state = next((r.state for r in details.replicas if r.replica_id == ctx.replica_tag), None)
        if state is None:  # gone from the list: stopping, once it had been listed
            return seen
        seen = True
        return state in (ReplicaState.STOPPING, ReplicaState.STOPPED)

    return stopping
