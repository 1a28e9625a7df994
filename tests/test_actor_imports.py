"""A session actor is a process per call: what its module and constructor load is memory every
call pays (`benchmarks/actor_memory.py` measures it). They must not load the settings machinery,
Serve, models or any provider's client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Top-level packages (or our own modules) a session actor's process has no use for.
HEAVY = (
    "pydantic_settings",
    "dotenv",
    "common.config",
    "ray.serve",
    "numpy",
    "torch",
    "onnxruntime",
    "ctranslate2",
    "faster_whisper",
    "piper",
    "sentence_transformers",
    "chromadb",
    "redis",
    "openai",
    "httpx",
    "fastapi",
    "starlette",
    "websockets",
    "serve_app",
    "deployments.dialogue",
    "deployments.knowledge",
    "deployments.embeddings",
    "deployments.tools",
    "deployments.state",
)

PROBE = """
import json, sys
from models.session import SessionSettings, StartSession
import deployments.session.actor as actor_module
settings = SessionSettings(store_path=sys.argv[1], state_ttl_s=3600, max_turns=50, resume_window_s=30,
                           session_lease_s=3)
actor = actor_module.SessionActor.__ray_actor_class__(settings)  # what the Gateway starts, without Ray
opened = actor.start(StartSession(session_id="imports-1", caller_id="caller-1"))
print(json.dumps({"modules": sorted(sys.modules), "session": opened.state.session_id}))
"""


def _loaded(store: Path) -> tuple[set[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's code, not an installed one
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(store)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return set(result["modules"]), result["session"]


def _heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_a_session_actor_loads_nothing_heavy(tmp_path):
    modules, session = _loaded(tmp_path / "sessions.db")
    assert session == "imports-1"  # the actor really started a call on its store
    assert {"ray", "pydantic", "sqlite3", "deployments.session.actor"} <= modules  # the probe saw the real imports
    assert _heavy_in(modules) == []


def test_the_check_sees_a_heavy_import():
    """The list check itself: a module that loads one of them is caught, by prefix as well."""
    assert _heavy_in({"ray", "ray.serve.handle", "common.configs", "common.config"}) == [
        "common.config",
        "ray.serve.handle",
    ]
