"""The held-out test set stays honest: big enough, every category covered, and no utterance leaked.

An utterance that also appears in the intent examples, the policy patterns, the knowledge base or the
development scenarios measures memory, not understanding; the leak check fails with the utterance and
the file it was found in, so the fix is to rewrite the utterance, never to copy it into the examples.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from serve_app import eval_checks
from serve_app.evaluate import load_scenarios

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "serve_app" / "scenarios"
TEST_SET = SCENARIOS / "test.yaml"
CATEGORIES = set(eval_checks.CATEGORIES)
EXPECTATIONS = set(eval_checks.CHECKS)
ESCALATION_REASONS = {"caller_request", "auth_locked", "consecutive_failures", "low_confidence"}
CODE_DIRS = ("serve_app", "deployments", "models")
CORPUS_SUFFIXES = {".py", ".yaml", ".yml", ".json", ".txt", ".md"}  # code and any data file examples could live in
MIN_WORDS = 3

_DIGIT_COMMA = re.compile(r"(?<=\d),(?=\d)")  # "10,042" is the number 10042, not two words
_APOSTROPHE = re.compile(r"['\u2019]")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def normalise(text: str) -> str:
    """Lowercase, punctuation dropped, spaces collapsed: Whisper's punctuation must not hide a copy."""
    text = _APOSTROPHE.sub("", _DIGIT_COMMA.sub("", text.lower()))
    return _NON_WORD.sub(" ", text).strip()


def find_leaks(utterances: list[str], corpus: dict[str, str], min_words: int = MIN_WORDS) -> list[tuple[str, str]]:
    """(utterance, source) for every utterance of `min_words`+ words (digits not counted) found,
    as whole words, in a source."""
    texts = {name: f" {normalise(text)} " for name, text in corpus.items()}
    leaks = []
    for utterance in utterances:
        needle = normalise(utterance)
        if sum(not w.isdigit() for w in needle.split()) < min_words:
            continue  # a bare "4 3 2 1" or "yes please" is what any caller says, not a copied sentence
        leaks += [(utterance, name) for name, text in texts.items() if f" {needle} " in text]
    return leaks


def dev_set() -> Path:
    for name in ("dev.yaml",):
        if (SCENARIOS / name).exists():
            return SCENARIOS / name
    raise AssertionError(f"no development scenarios (dev.yaml) in {SCENARIOS}")


def leak_corpus() -> dict[str, str]:
    """Everything the agent was built or tuned from: code (intent examples, patterns), the KB, the dev set."""
    files = [
        p
        for d in CODE_DIRS
        for p in sorted((ROOT / d).rglob("*"))
        if p.suffix in CORPUS_SUFFIXES and p.is_file() and p != TEST_SET and "__pycache__" not in p.parts
    ]
    files += sorted((ROOT / "docs" / "kb").glob("*.md")) + [dev_set()]
    files = list(dict.fromkeys(files))  # the dev set is also under serve_app/
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8", errors="replace") for p in files}


def utterances(path: Path) -> list[str]:
    return [t["user"] for sc in load_scenarios([path]) for t in sc["turns"]]


def category_counts(scenarios: list[dict]) -> Counter:
    return Counter(t.get("category", sc.get("category")) for sc in scenarios for t in sc["turns"])


def report(leaks: list[tuple[str, str]]) -> str:
    return "test-set utterances leaked:\n" + "\n".join(f"  {u!r} found in {src}" for u, src in leaks)


def test_the_test_set_is_big_enough_and_covers_every_category():
    scenarios = load_scenarios([TEST_SET])
    counts = category_counts(scenarios)
    print("turns per category:", dict(sorted(counts.items())))
    assert sum(counts.values()) >= 120
    assert set(counts) == CATEGORIES, f"unknown or missing categories: {set(counts) ^ CATEGORIES}"
    thin = {c: n for c, n in counts.items() if n < 10}
    assert not thin, f"categories with fewer than 10 turns: {thin}"
    assert len(load_scenarios([dev_set()])) > 0


def test_every_expectation_is_one_the_evaluator_knows(tmp_path):
    from deployments.dialogue.tools import support_tools
    from deployments.tools.support_store import SupportStore

    tools = {spec.name for spec in support_tools(SupportStore(tmp_path / "s.db", seed_demo=False), pins=None)}
    names = {sc["name"] for sc in load_scenarios([TEST_SET])}
    assert len(names) == len(load_scenarios([TEST_SET])), "scenario names must be unique"
    for sc in load_scenarios([TEST_SET]):
        assert sc.get("category") in CATEGORIES, sc["name"]
        for turn in sc["turns"]:
            where = f"{sc['name']}: {turn['user']!r}"
            unknown = set(turn) - {"user", "category"} - EXPECTATIONS
            assert not unknown, f"{where}: unknown expectation {unknown}"
            assert set(turn) & EXPECTATIONS, f"{where}: a turn without any expectation measures nothing"
            assert turn.get("category", sc["category"]) in CATEGORIES, where
            expected = turn.get("expect_tool", "none")
            assert {t for t in (expected if isinstance(expected, list) else [expected])} <= tools | {"none"}, where
            escalation = turn.get("expect_escalation", False)
            assert isinstance(escalation, bool) or escalation in ESCALATION_REASONS, where


def test_no_test_utterance_appears_in_code_kb_or_dev_set():
    leaks = find_leaks(utterances(TEST_SET), leak_corpus())
    assert not leaks, report(leaks)


def test_find_leaks_on_a_tiny_corpus():
    corpus = {"engine.py": 'EXAMPLES = ["Where is my Order, 10042?", "talk to a human"]', "kb.md": "We're open daily."}
    assert find_leaks(["where is my order 10042!", "WHERE... is my order, 10,042"], corpus) == [
        ("where is my order 10042!", "engine.py"),
        ("WHERE... is my order, 10,042", "engine.py"),
    ]
    assert find_leaks(["uh, where is my order 10042", "is my ord"], corpus) == []  # not contained; part-word
    assert find_leaks(["a human"], corpus) == []  # under three words: too common to call a leak
    assert find_leaks(["Were open daily"], corpus) == [("Were open daily", "kb.md")]


@pytest.mark.parametrize("source", ["dev", "kb"])
def test_the_leak_check_catches_a_copied_line(tmp_path, source):
    """A scratch copy of the test set with one line taken from the dev set or the KB must fail the check."""
    if source == "dev":
        copied = next(u for u in utterances(dev_set()) if len(normalise(u).split()) >= MIN_WORDS)
    else:
        kb = sorted((ROOT / "docs" / "kb").glob("*.md"))[0].read_text()
        copied = next(line for line in kb.splitlines() if line and not line.startswith("#"))
    scratch = tmp_path / "test.yaml"
    shutil.copy(TEST_SET, scratch)
    data = yaml.safe_load(scratch.read_text())
    data["scenarios"].append({"name": "copied", "category": "knowledge", "turns": [{"user": copied.upper()}]})
    scratch.write_text(yaml.safe_dump(data))
    leaks = find_leaks(utterances(scratch), leak_corpus())
    assert copied.upper() in [u for u, _ in leaks], report(leaks)
