"""Offline evaluation: run scenario files through the dialogue stack in text mode.

    voice-eval [serve_app/scenarios/support.yaml ...] [--min-success 1.0]

Each scenario is a list of caller turns with expectations (`expect_tool`,
`expect_escalation`, `expect_reply_contains`, `expect_authenticated`). The stack is the real
one (intent embeddings, policy, tools over a fresh demo store, the knowledge base); only the
speech is left out. Prints pass or fail per scenario with reasons, and the success rate.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_SCENARIOS = Path(__file__).resolve().parent / "scenarios" / "support.yaml"


@dataclass
class Outcome:
    name: str
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def check_turn(turn: dict, result, memory: dict) -> list[str]:
    """Every expectation of one turn that the agent's result does not meet."""
    problems = []
    reply = " ".join(result.sentences)
    tools = [t.tool for t in result.tool_results]
    if "expect_tool" in turn:
        expected = turn["expect_tool"]
        if expected in (None, False, "none"):
            if tools:
                problems.append(f"expected no tool, called {tools}")
        else:
            for tool in _as_list(expected):
                if tool not in tools:
                    problems.append(f"expected tool {tool}, called {tools or 'none'}")
    if "expect_escalation" in turn:
        expected = turn["expect_escalation"]
        if expected is False and result.escalate:
            problems.append(f"unexpected escalation ({result.escalate})")
        elif expected is True and not result.escalate:
            problems.append("expected an escalation, none happened")
        elif isinstance(expected, str) and result.escalate != expected:
            problems.append(f"expected escalation {expected}, got {result.escalate}")
    for needle in _as_list(turn.get("expect_reply_contains", [])):
        if needle.lower() not in reply.lower():
            problems.append(f"reply lacks {needle!r}: {reply!r}")
    for needle in _as_list(turn.get("expect_reply_not_contains", [])):
        if needle.lower() in reply.lower():
            problems.append(f"reply should not contain {needle!r}: {reply!r}")
    if "expect_authenticated" in turn and memory.get("authenticated") != turn["expect_authenticated"]:
        problems.append(f"expected authenticated={turn['expect_authenticated']}, is {memory.get('authenticated')}")
    return problems


def build_agent(workdir: Path, kb_docs: Path | None = None):
    """The local support agent over real models, with its own store and knowledge base."""
    from deployments.dialogue.engine import IntentClassifier
    from deployments.dialogue.support import SupportAgent
    from deployments.dialogue.tools import support_tools
    from deployments.embeddings.engine import Embedder
    from deployments.knowledge.engine import KnowledgeBase
    from deployments.policy.engine import PolicyEngine
    from deployments.tools.breaker import CircuitBreaker
    from deployments.tools.router import ToolRouter
    from deployments.tools.support_store import SupportStore
    from serve_app.config import get_settings

    settings = get_settings()
    embedder = Embedder(settings.embeddings_model_path)

    async def embed_many(texts):
        return embedder.embed(texts)

    class Breakers:  # one breaker per tool, in process: evaluation has no cluster
        def __init__(self):
            self._b: dict[str, CircuitBreaker] = {}

        async def allow(self, tool):
            return self._b.setdefault(tool, CircuitBreaker(settings.breaker_failure_threshold, settings.breaker_recovery_s)).allow()

        async def record(self, tool, ok):
            self._b.setdefault(tool, CircuitBreaker(settings.breaker_failure_threshold, settings.breaker_recovery_s)).record(ok)

    kb = KnowledgeBase(workdir / "kb", embed_many)
    asyncio.run(kb.index_folder(kb_docs or settings.kb_docs_path))

    def make(store_name: str):
        store = SupportStore(workdir / f"{store_name}.db")
        router = ToolRouter(support_tools(store), Breakers(), store)
        return SupportAgent(IntentClassifier(embed_many), router, kb, PolicyEngine(settings.max_consecutive_failures), settings.confidence_threshold)

    return make


def run_scenarios(scenarios: list[dict], make_agent) -> list[Outcome]:
    outcomes = []
    for i, sc in enumerate(scenarios):
        agent = make_agent(f"store{i}")
        memory: dict = {}
        outcome = Outcome(sc["name"])
        for n, turn in enumerate(sc["turns"], 1):
            result = asyncio.run(agent.respond(turn["user"], memory, f"eval-{i}", sc.get("caller_id", "demo-alice")))
            memory = result.memory
            outcome.failures += [f"turn {n} ({turn['user']!r}): {p}" for p in check_turn(turn, result, memory)]
            if result.end_call:
                break
        outcomes.append(outcome)
    return outcomes


def load_scenarios(paths: list[Path]) -> list[dict]:
    scenarios = []
    for path in paths:
        data = yaml.safe_load(Path(path).read_text())
        for sc in data["scenarios"]:
            if not sc.get("name") or not sc.get("turns") or not all("user" in t for t in sc["turns"]):
                raise ValueError(f"{path}: every scenario needs a name and turns with a 'user' line: {sc!r:.120}")
            scenarios.append(sc)
    return scenarios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="voice-eval", description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path, default=[DEFAULT_SCENARIOS])
    p.add_argument("--min-success", type=float, default=1.0, help="exit 1 below this success rate")
    args = p.parse_args(argv)
    scenarios = load_scenarios(args.files)
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = run_scenarios(scenarios, build_agent(Path(tmp)))
    for o in outcomes:
        print(f"{'PASS' if o.passed else 'FAIL'}  {o.name}")
        for f in o.failures:
            print(f"        {f}")
    passed = sum(o.passed for o in outcomes)
    rate = passed / len(outcomes)
    print(f"\n{passed}/{len(outcomes)} scenarios passed ({rate:.0%})")
    return 0 if rate >= args.min_success else 1


if __name__ == "__main__":
    sys.exit(main())
