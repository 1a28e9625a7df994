"""The cluster's retention task: one named, detached Ray actor that runs the retention purge
(`governance.purge`) over the configured state store every VOICE_RETENTION_PURGE_INTERVAL_S.

Started by whichever Dialogue replica comes up first (`get_if_exists`, as the breaker actor);
restarted by Ray if its process dies, and then purges at once. The purge itself is plain Python;
this is only the clock around it.
"""

from __future__ import annotations

import logging
import threading

import ray

from common.logs import mask_logs_in_this_process

ACTOR_NAME = "retention_purge"
NAMESPACE = "voice"

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0, max_restarts=-1)
class RetentionActor:
    def __init__(self):
        mask_logs_in_this_process()
        from common.config import get_settings

        self._settings = get_settings()
        self._runs = 0
        self._stop = threading.Event()
        threading.Thread(target=self._loop, name="retention-purge", daemon=True).start()

    def _loop(self) -> None:
        from deployments.state import open_state
        from deployments.state.governance import purge

        settings = self._settings
        while not self._stop.is_set():
            try:
                state = open_state(settings, sessions=True)
                try:
                    purged = purge(state, settings.retention_days * 86400)
                finally:
                    state.close()
                self._runs += 1
                if purged.sessions or purged.audit_entries:
                    log.info("retention: purged %d calls and %d audit entries", purged.sessions, purged.audit_entries)
            except Exception as exc:  # the store unreachable: try again at the next interval
                log.warning("retention purge failed: %r", exc)
            self._stop.wait(settings.retention_purge_interval_s)

    def runs(self) -> int:
        """Purges done since this actor started (tests wait on it)."""
        return self._runs


def retention_actor():
    """The cluster's retention actor, created by whoever asks first."""
    return RetentionActor.options(
        name=ACTOR_NAME, namespace=NAMESPACE, get_if_exists=True, lifetime="detached"
    ).remote()
