"""This process's metrics, built from the catalog (common/metric_catalog.py) through Ray's
metrics API, so that every one reaches Ray's metrics endpoint under its catalog name: no
deployment spells a metric name, kind, tag or bucket of its own.

`ray.serve.metrics` adds the replica's deployment and replica tags inside a Serve replica and
none elsewhere (a plain actor such as the breaker actor), so one builder serves both.

Ray's metrics agent drops a gauge series that was not set again within two export intervals
(2 x 10 s by default): a gauge set on change alone (capacity, set once; a breaker that stays
open) would vanish from Prometheus. Each gauge's last values are set again every
`GAUGE_REFRESH_S` by a daemon thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from common.metric_catalog import BY_NAME, MetricSpec, bounded

GAUGE_REFRESH_S = 5.0
log = logging.getLogger(__name__)


def build(spec: MetricSpec) -> Any:
    """The Ray metric object for `spec`."""
    from ray.serve import metrics

    kinds = {"counter": metrics.Counter, "gauge": metrics.Gauge, "histogram": metrics.Histogram}
    kwargs: dict[str, Any] = {"description": spec.description, "tag_keys": spec.tag_keys}
    if spec.kind == "histogram":
        kwargs["boundaries"] = list(spec.boundaries)
    return kinds[spec.kind](spec.name, **kwargs)


class Meters:
    """The catalog metrics one process records, each built once; tag values bounded on the way in.

    `allowed`: the enumerated values of a dynamic tag (`tool`, `breaker`) for this process."""

    def __init__(
        self,
        *names: str,
        allowed: Mapping[str, tuple[str, ...]] | None = None,
        factory: Callable[[MetricSpec], Any] = build,
        refresh_s: float | None = GAUGE_REFRESH_S,
    ):
        self._specs = {name: BY_NAME[name] for name in names}  # an unknown name fails here, at start
        self._metrics = {name: factory(spec) for name, spec in self._specs.items()}
        self.allowed = dict(allowed or {})
        self._gauges: dict[tuple, tuple[str, float, dict | None]] = {}  # series -> its last value
        self._lock = threading.Lock()
        if refresh_s and any(spec.kind == "gauge" for spec in self._specs.values()):
            threading.Thread(target=self._refresh_every, args=(refresh_s,), name="gauge-refresh", daemon=True).start()

    def _tags(self, name: str, tags: Mapping[str, str] | None) -> dict[str, str] | None:
        spec = self._specs[name]
        return bounded(spec, tags, self.allowed) if spec.tag_keys else None

    def inc(self, name: str, tags: Mapping[str, str] | None = None, value: float = 1.0) -> None:
        self._metrics[name].inc(value, tags=self._tags(name, tags))

    def set(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        bounded_tags = self._tags(name, tags)
        with self._lock:
            self._gauges[(name, *sorted((bounded_tags or {}).items()))] = (name, value, bounded_tags)
            self._metrics[name].set(value, tags=bounded_tags)

    def refresh(self) -> None:
        """Set every gauge series again to its last value, so Ray keeps exporting it."""
        with self._lock:
            for name, value, tags in self._gauges.values():
                self._metrics[name].set(value, tags=tags)

    def _refresh_every(self, every_s: float) -> None:
        while True:
            time.sleep(every_s)
            try:
                self.refresh()
            except Exception as exc:  # a metric lost must not take the replica's thread down
                log.warning("gauge refresh failed: %r", exc)

    def observe(self, name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
        self._metrics[name].observe(value, tags=self._tags(name, tags))
