"""Offline evaluation: run scenario files through the dialogue stack in text mode.

    voice-eval [--set dev|test] [FILE.yaml ...] [--min-success 0.95]

Each scenario (a `category`, an optional `caller_id`) is a list of caller turns with
expectations (keys in `serve_app/eval_checks.py`); a turn may name its own `category`. The
stack is the real one (intent embeddings, policy, tools over a fresh demo store, the knowledge
base); only the speech is left out. A turn passes when all its expectations hold. Prints each
scenario with its failures, turn accuracy per category, and the scenario and turn pass rates.
The development set (`scenarios/dev.yaml`) is for tuning; the test set (`scenarios/test.yaml`)
is written apart from the code and only measured.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from serve_app.eval_checks import CATEGORIES, check_turn, scored, validate

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
SETS = {"dev": SCENARIO_DIR / "dev.yaml", "test": SCENARIO_DIR / "test.yaml"}


@dataclass
class TurnOutcome:
    user: str
    category: str
    failures: list[str]
    scored: bool = True


@dataclass
class Outcome:
    name: str
    turns: list[TurnOutcome] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [f"turn {n} ({t.user!r}): {f}" for n, t in enumerate(self.turns, 1) for f in t.failures]

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class Report:
    scenarios: int
    scenarios_passed: int
    per_category: dict[str, tuple[int, int]]  # category: (turns passed, turns scored)

    @property
    def turns(self) -> tuple[int, int]:
        return sum(p for p, _ in self.per_category.values()), sum(n for _, n in self.per_category.values())

    @property
    def turn_accuracy(self) -> float:
        passed, total = self.turns
        return passed / total if total else 0.0


def build_agent(workdir: Path, kb_docs: Path | None = None):
    """The local support agent over real models, with its own store and knowledge base."""
    from common.config import get_settings
    from deployments.dialogue.engine import IntentClassifier
    from deployments.dialogue.support import SupportAgent
    from deployments.dialogue.tools import support_router
    from deployments.embeddings.engine import Embedder
    from deployments.knowledge.engine import KnowledgeBase
    from deployments.policy.engine import PolicyEngine
    from deployments.policy.escalation import EscalationClassifier
    from deployments.state import sqlite_state
    from deployments.tools.breaker import CircuitBreaker
    from deployments.tools.support_store import SupportStore

    settings = get_settings()
    embedder = Embedder(settings.embeddings_model_path)

    async def embed_many(texts):
        return embedder.embed(texts)

    class Breakers:  # one breaker per tool, in process: evaluation has no cluster
        def __init__(self):
            self._b: dict[str, CircuitBreaker] = {}

        def _get(self, tool) -> CircuitBreaker:
            return self._b.setdefault(
                tool, CircuitBreaker(settings.breaker_failure_threshold, settings.breaker_recovery_s)
            )

        async def allow(self, tool):
            return self._get(tool).allow()

        async def record(self, tool, ok):
            self._get(tool).record(ok)

    kb = KnowledgeBase(workdir / "kb", embed_many)
    asyncio.run(kb.index_folder(kb_docs or settings.kb_docs_path))

    classify, wants_human = IntentClassifier(embed_many), EscalationClassifier(embed_many)

    def make(store_name: str):
        store = SupportStore(workdir / f"{store_name}.db")
        router = support_router(store, sqlite_state(workdir / f"{store_name}-state.db"), Breakers())
        policy = PolicyEngine(settings.max_consecutive_failures)
        return SupportAgent(classify, router, kb, policy, settings.confidence_threshold, wants_human=wants_human)

    return make


def run_scenarios(scenarios: list[dict], make_agent) -> list[Outcome]:
    """Each scenario on a fresh agent and store; turns after the call ended fail."""
    outcomes = []
    for i, sc in enumerate(scenarios):
        validate(sc, "scenario")
        agent, memory, ended = make_agent(f"store{i}"), {}, False
        outcome = Outcome(sc["name"])
        for turn in sc["turns"]:
            category = turn.get("category", sc.get("category"))
            if ended:
                outcome.turns.append(TurnOutcome(turn["user"], category, ["the call had already ended"]))
                continue
            result = asyncio.run(agent.respond(turn["user"], memory, f"eval-{i}", sc.get("caller_id", "demo-alice")))
            memory, ended = result.memory, result.end_call
            outcome.turns.append(TurnOutcome(turn["user"], category, check_turn(turn, result, memory), scored(turn)))
        outcomes.append(outcome)
    return outcomes


def summarize(outcomes: list[Outcome]) -> Report:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for o in outcomes:
        for t in o.turns:
            if t.scored or t.failures:
                counts[t.category][0] += not t.failures
                counts[t.category][1] += 1
    per_category = {c: tuple(counts[c]) for c in CATEGORIES if c in counts}
    return Report(len(outcomes), sum(o.passed for o in outcomes), per_category)


def format_report(outcomes: list[Outcome], report: Report) -> str:
    lines = []
    for o in outcomes:
        lines.append(f"{'PASS' if o.passed else 'FAIL'}  {o.name}")
        lines += [f"        {f}" for f in o.failures]
    lines.append("\nturn accuracy per category:")
    for category, (passed, total) in report.per_category.items():
        lines.append(f"  {category:<14} {passed:>4}/{total:<4} {passed / total:6.1%}")
    passed, total = report.turns
    rate = report.scenarios_passed / report.scenarios if report.scenarios else 0.0
    lines.append(f"\n{report.scenarios_passed}/{report.scenarios} scenarios passed ({rate:.0%})")
    lines.append(f"{passed}/{total} turns passed ({report.turn_accuracy:.1%})")
    return "\n".join(lines)


def load_scenarios(paths: list[Path]) -> list[dict]:
    scenarios = []
    for path in paths:
        data = yaml.safe_load(Path(path).read_text())
        if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
            raise ValueError(f"{path}: expected a mapping with a 'scenarios' list")
        scenarios += [validate(sc, str(path)) for sc in data["scenarios"]]
    return scenarios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="voice-eval", description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", type=Path, help="scenario files (instead of --set)")
    p.add_argument("--set", choices=sorted(SETS), default="dev", help="the shipped set to run (default dev)")
    p.add_argument("--min-success", type=float, default=1.0, help="exit 1 below this turn accuracy")
    args = p.parse_args(argv)
    try:
        scenarios = load_scenarios(args.files or [SETS[args.set]])
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"voice-eval: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = run_scenarios(scenarios, build_agent(Path(tmp)))
    report = summarize(outcomes)
    print(format_report(outcomes, report))
    return 0 if report.turn_accuracy >= args.min_success else 1


if __name__ == "__main__":
    sys.exit(main())
