"""A session actor's memory against a bare Ray actor's, both measured in this run.

    .venv/bin/python benchmarks/actor_memory.py [--actors 4] [--turns 6] [--num-cpus 4]
    PYTHONPATH=/work/main .venv/bin/python benchmarks/actor_memory.py   # another checkout's actor

Starts its own single-node Ray on loopback (logical CPUs set explicitly), spawns a bare actor
and K session actors the way the Gateway does (detached, named, in the session namespace),
gives each session actor a call (start, a few recorded and finished turns) and prints each
process's PSS (proportional set size: shared pages counted once across processes, so what a
further call really costs the machine), plus the mean and its ratio to the bare actor's.
The session actor comes from whichever `deployments` PYTHONPATH finds first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid

import psutil

if not os.environ.get("PYTHONPATH"):  # this checkout's code, not an editable install's
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SETTLE_S = 2.0  # let each process's pages settle before reading PSS


def pss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_full_info().pss / 2**20


def uss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_full_info().uss / 2**20


def give_a_call(actor, turns: int) -> None:
    """What a live call asks of its actor: start, then each turn recorded and finished."""
    import ray

    from models.session import StartSession, TurnFinish, TurnRecord

    sid = uuid.uuid4().hex
    ray.get(actor.start.remote(StartSession(session_id=sid, caller_id="caller-bench", locale="en-US")))
    for i in range(turns):
        said = "what are your opening hours" if i % 2 else "where is my order ten oh four two"
        record = TurnRecord(turn_id=i, source="speech", transcript=said, sentences=["Nine to five.", "Monday on."])
        ray.get(actor.record_turn.remote(record))
        ray.get(actor.finish_turn.remote(TurnFinish(turn_id=i, metrics={"asr_ms": 12.0})))


def gateway_args(module) -> tuple:
    """The constructor arguments the Gateway gives a session actor (none in checkouts before
    `SessionSettings`, whose actor read the settings itself)."""
    if not hasattr(module, "session_settings"):
        return ()
    from common.config import get_settings

    return (module.session_settings(get_settings()),)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--actors", type=int, default=6, help="session actors to spawn (K)")
    ap.add_argument("--turns", type=int, default=6, help="turns given to each session actor's call")
    ap.add_argument("--num-cpus", type=int, default=4, help="Ray's logical CPUs")
    ap.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="env var for the session actors only"
    )
    args = ap.parse_args()

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # every Ray service on 127.0.0.1
    data = tempfile.mkdtemp(prefix="actor-mem-")
    os.environ["VOICE_STORE_PATH"] = os.path.join(data, "sessions.db")
    import ray

    import deployments.session.actor as session_actor
    from deployments.session.actor import SESSION_NAMESPACE, SessionActor

    source = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules["deployments"].__file__)))
    ray.init(
        address="local",  # a Ray of its own, never a running platform's
        _node_ip_address="127.0.0.1",  # loopback only
        num_cpus=args.num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        namespace=SESSION_NAMESPACE,
        runtime_env={"env_vars": {"VOICE_STORE_PATH": os.environ["VOICE_STORE_PATH"], "PYTHONPATH": source}},
    )
    try:

        @ray.remote(num_cpus=0)
        class Bare:
            def ping(self) -> int:
                return os.getpid()

        bare = Bare.remote()
        bare_pid = ray.get(bare.ping.remote())
        opts = {"num_cpus": 0.01, "namespace": SESSION_NAMESPACE, "lifetime": "detached"}
        if args.env:  # the job's env vars named again, whether or not Ray merges them with the actor's
            env = {"VOICE_STORE_PATH": os.environ["VOICE_STORE_PATH"], "PYTHONPATH": source}
            opts["runtime_env"] = {"env_vars": env | dict(kv.split("=", 1) for kv in args.env)}
        args_ = gateway_args(session_actor)
        actors = [
            SessionActor.options(name=f"session-{uuid.uuid4().hex}", **opts).remote(*args_) for _ in range(args.actors)
        ]
        pids = ray.get([a.ping.remote() for a in actors])
        for a in actors:
            give_a_call(a, args.turns)
        time.sleep(SETTLE_S)

        bare_pss, bare_uss = pss_mb(bare_pid), uss_mb(bare_pid)
        print(f"session actor from: {source}; its extra env: {args.env or 'none'}")
        print(f"bare Ray actor     pid {bare_pid:>7}  PSS {bare_pss:6.1f} MB  USS {bare_uss:6.1f} MB")
        pss, uss = [], []
        for pid in pids:
            pss.append(pss_mb(pid))
            uss.append(uss_mb(pid))
            print(f"session actor      pid {pid:>7}  PSS {pss[-1]:6.1f} MB  USS {uss[-1]:6.1f} MB")
        mean = statistics.mean(pss)
        print(
            f"session actor mean PSS {mean:.1f} MB (USS {statistics.mean(uss):.1f}) over {len(pss)}; "
            f"bare {bare_pss:.1f} MB (USS {bare_uss:.1f}); ratio {mean / bare_pss:.2f}"
        )
        for a in actors:
            ray.get(a.finalize.remote("closed"))
            ray.kill(a, no_restart=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
