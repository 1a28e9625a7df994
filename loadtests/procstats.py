"""CPU and memory of the platform's Ray processes, by component, sampled about once a second.

A background thread reads /proc through psutil: per process the CPU used since the last sample
(% of one core; a process born since then counts from its start) and its PSS (shared pages split
between the processes sharing them, so per-process figures add up; RSS where PSS cannot be read).
Processes are put in components by the title Ray gives them (`ray::ServeReplica:voice:TTS`,
`ray::SessionActor`, `ray::ProxyActor`, ...); the sampling process itself is `sweep`.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import psutil

DEPLOYMENTS = ("Gateway", "ASR", "TTS", "Dialogue", "Embeddings")
# "Ray worker": a worker process not yet any actor (`ray::IDLE`, or still importing): under load,
# the processes started for new calls' session actors.
COMPONENTS = (*DEPLOYMENTS, "SessionActor", "HTTP proxy", "Serve controller", "Ray worker", "Ray other", "sweep")
SELF = "sweep"
_RAY_CORE = ("raylet", "gcs_server", "/site-packages/ray/")


@dataclass
class Sample:
    at: float  # time.monotonic()
    cpu: dict[str, float] = field(default_factory=dict)  # component -> % of one core
    pss_mb: dict[str, float] = field(default_factory=dict)  # component -> MB
    procs: dict[str, int] = field(default_factory=dict)  # component -> processes

    def platform_pss_mb(self) -> float:
        """Every Ray process's memory, the load generator's left out."""
        return sum(v for k, v in self.pss_mb.items() if k != SELF)


def component(cmdline: list[str], name: str = "") -> str | None:
    """The component a process belongs to, from its command line (Ray workers set it to their
    title), or None for a process that is not Ray's."""
    title = " ".join(cmdline).strip() or name
    if title.startswith("ray::"):
        head = title[5:].split()[0] if title[5:].split() else ""
        if head.startswith("ServeReplica:"):
            deployment = head.rsplit(":", 1)[-1].split(".")[0]
            return deployment if deployment in DEPLOYMENTS else "Ray other"
        for prefix, comp in (("SessionActor", "SessionActor"), ("ProxyActor", "HTTP proxy")):
            if head.startswith(prefix):
                return comp
        if head.startswith("IDLE"):
            return "Ray worker"
        return "Serve controller" if head.startswith("ServeController") else "Ray other"
    if "default_worker.py" in title:
        return "Ray worker"
    if name in ("raylet", "gcs_server") or any(mark in title for mark in _RAY_CORE):
        return "Ray other"
    return None


class ProcSampler:
    """Samples in a daemon thread from start() to stop(). `own_tree`: only this process and its
    descendants (a platform this process started); otherwise every Ray process on the machine."""

    def __init__(self, interval_s: float = 1.0, own_tree: bool = True):
        self.interval_s, self.own_tree = interval_s, own_tree
        self.samples: list[Sample] = []
        self._me = psutil.Process(os.getpid())
        self._seen: dict[int, tuple[psutil.Process, str, float]] = {}  # pid -> (process, component, cpu s)
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="procstats", daemon=True)

    def start(self) -> ProcSampler:
        self._last = time.monotonic()
        self.sample()  # the baseline each process's CPU is measured from
        self.samples.clear()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def between(self, t0: float, t1: float) -> list[Sample]:
        return [s for s in list(self.samples) if t0 <= s.at <= t1]

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append(self.sample())

    def _processes(self):
        if self.own_tree:
            yield self._me
            yield from self._me.children(recursive=True)
        else:
            yield from psutil.process_iter()

    def sample(self) -> Sample:
        now, wall = time.monotonic(), time.time()
        dt = max(now - self._last, 1e-3)
        out, seen = Sample(now), {}
        for proc in self._processes():
            try:
                known = self._seen.get(proc.pid)
                if known and known[0].create_time() == proc.create_time():
                    proc, comp, cpu_before = known
                else:
                    comp = SELF if proc.pid == self._me.pid else component(proc.cmdline(), proc.name())
                    cpu_before = 0.0  # born since the last sample (or first seen): from its start
                    if proc.create_time() < wall - dt:
                        cpu_before = None
                if comp is None:
                    continue
                times = proc.cpu_times()
                cpu = times.user + times.system
                seen[proc.pid] = (proc, comp, cpu)
                if cpu_before is not None:
                    out.cpu[comp] = out.cpu.get(comp, 0.0) + max(cpu - cpu_before, 0.0) / dt * 100
                out.pss_mb[comp] = out.pss_mb.get(comp, 0.0) + _memory(proc) / 2**20
                out.procs[comp] = out.procs.get(comp, 0) + 1
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        self._seen, self._last = seen, now
        return out


def _memory(proc: psutil.Process) -> float:
    try:
        return float(proc.memory_full_info().pss)
    except (psutil.AccessDenied, AttributeError):
        return float(proc.memory_info().rss)


def mean_cpu(samples: list[Sample]) -> dict[str, float]:
    """Mean % of one core per component over the samples (a component absent from one counts 0)."""
    if not samples:
        return {}
    comps = {c for s in samples for c in s.cpu}
    return {c: sum(s.cpu.get(c, 0.0) for s in samples) / len(samples) for c in COMPONENTS if c in comps}
