"""Memory of the running platform: idle, per extra call, and a session actor against a bare actor.

    .venv/bin/python benchmarks/memory.py [--calls 10] [--url ws://127.0.0.1:8000/ws/call]

Needs the platform up (`voice-agent up`). PSS (proportional set size) counts shared pages
once across processes, so the sum is what the machine really spends. Prints the figures and
the ratio of a session actor's PSS to a bare Ray actor's, both measured in this run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import psutil


def pss_mb(proc: psutil.Process) -> float:
    try:
        return proc.memory_full_info().pss / 2**20
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0


def ray_processes() -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline", "name"]):
        cmd = p.info["cmdline"] or [""]
        ray_owned = cmd[0].startswith(("ray::", "ray-dashboard")) or any("site-packages/ray/" in c for c in cmd[:3])
        if p.pid != os.getpid() and ray_owned:
            out.append(p)
    return out


def by_role() -> dict[str, float]:
    roles: dict[str, float] = {}
    for p in ray_processes():
        title = " ".join(p.cmdline()[:1]) if p.cmdline() else p.name()
        role = title.split()[0] if title.startswith("ray::") else os.path.basename(title.split()[0])
        roles[role] = roles.get(role, 0.0) + pss_mb(p)
    return roles


def session_actor_pss() -> list[float]:
    return [pss_mb(p) for p in ray_processes() if p.cmdline() and p.cmdline()[0].startswith("ray::SessionActor")]


async def hold_calls(url: str, n: int):
    from serve_app.call import CallClient

    clients = [CallClient(url, f"mem-{i}") for i in range(n)]
    for c in clients:
        await c.connect()
    await asyncio.gather(*(c.wait_event("agent.state", timeout=60, state="listening") for c in clients))
    return clients


def bare_actor_pss() -> float:
    import ray

    @ray.remote(num_cpus=0)
    class Bare:
        def ping(self):
            return os.getpid()

    actor = Bare.remote()
    pid = ray.get(actor.ping.remote())
    time.sleep(1.0)
    value = pss_mb(psutil.Process(pid))
    ray.kill(actor)
    return value


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--url", default="ws://127.0.0.1:8000/ws/call")
    args = ap.parse_args()

    idle = by_role()
    idle_total = sum(idle.values())
    print(f"idle platform: {idle_total:.0f} MB PSS in {len(ray_processes())} Ray processes")
    for role, mb in sorted(idle.items(), key=lambda kv: -kv[1]):
        print(f"  {role:<40} {mb:7.1f} MB")

    clients = await hold_calls(args.url, args.calls)
    time.sleep(2.0)
    busy_total = sum(by_role().values())
    per_call = (busy_total - idle_total) / args.calls
    actors = session_actor_pss()
    print(f"with {args.calls} calls open: {busy_total:.0f} MB PSS, {per_call:.1f} MB per extra call")
    print(f"session actors: {len(actors)} processes, mean {sum(actors) / len(actors):.1f} MB PSS each")
    for c in clients:
        await c.hangup()

    import ray

    ray.init(address="127.0.0.1:6379", log_to_driver=False)
    bare = bare_actor_pss()
    ray.shutdown()
    print(
        f"baseline bare Ray actor: {bare:.1f} MB PSS; "
        f"session actor / bare actor = {sum(actors) / len(actors) / bare:.2f}"
    )


if __name__ == "__main__":
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # `voice-agent up` runs Ray with token auth
    asyncio.run(main())
