"""The offline evaluation runs in the suite: the development set passes on the local engine, the
held-out test set (written apart from the code) reaches its target, and the harness refuses
anything it cannot check."""

import pytest

from serve_app.eval_checks import CATEGORIES
from serve_app.evaluate import SETS, build_agent, format_report, load_scenarios, main, run_scenarios, summarize


@pytest.fixture(scope="module")
def make_agent(tmp_path_factory):
    return build_agent(tmp_path_factory.mktemp("eval"))


def test_every_development_scenario_passes(make_agent):
    scenarios = load_scenarios([SETS["dev"]])
    assert len(scenarios) >= 100
    outcomes = run_scenarios(scenarios, make_agent)
    report = summarize(outcomes)
    print(format_report(outcomes, report))
    assert set(report.per_category) == set(CATEGORIES)  # every category is exercised
    assert [(o.name, o.failures) for o in outcomes if not o.passed] == []
    assert report.turn_accuracy == 1.0


@pytest.mark.skipif(not SETS["test"].exists(), reason="no held-out test set in this checkout")
def test_held_out_test_set_reaches_its_target(make_agent):
    """Measured, never tuned on: the figures per category are printed for the report."""
    outcomes = run_scenarios(load_scenarios([SETS["test"]]), make_agent)
    report = summarize(outcomes)
    print(format_report(outcomes, report))
    assert report.turn_accuracy >= 0.95, {c: f"{p}/{n}" for c, (p, n) in report.per_category.items()}


def test_a_wrong_expectation_fails_with_its_reason(make_agent):
    def sc(name, **turn):
        return {"name": name, "category": "knowledge", "turns": [{"user": "what time do you open", **turn}]}

    wrong = [
        sc("bad tool", expect_tool="order_status"),
        sc("bad text", expect_reply_contains="we never open"),
        {
            "name": "bad auth",
            "category": "order_status",
            "turns": [{"user": "where is my order", "expect_authenticated": True}],
        },
        sc("bad escalation", expect_escalation=True),
        sc("bad kb", expect_kb=False),
        sc("bad refusal", expect_refused=True),
        sc("bad pin", expect_asks_pin=True),
        sc("bad end", expect_end_call=True),
    ]
    outcomes = run_scenarios(wrong, make_agent)
    assert [o.passed for o in outcomes] == [False] * len(wrong)
    assert "expected tool order_status" in outcomes[0].failures[0]
    assert "we never open" in outcomes[1].failures[0]
    assert "expected kb=False" in outcomes[4].failures[0] and "expected refused=True" in outcomes[5].failures[0]


def test_turns_after_the_call_ended_fail(make_agent):
    [o] = run_scenarios(
        [
            {
                "name": "ended",
                "category": "small_talk",
                "turns": [{"user": "goodbye"}, {"user": "what time do you open", "expect_kb": True}],
            }
        ],
        make_agent,
    )
    assert o.turns[1].failures == ["the call had already ended"]


@pytest.mark.parametrize(
    "scenario, message",
    [
        (
            {"name": "typo", "category": "knowledge", "turns": [{"user": "hi", "expect_tol": "none"}]},
            "unknown key(s) ['expect_tol']",
        ),
        ({"name": "no category", "turns": [{"user": "hi"}]}, "category None"),
        ({"name": "bad category", "category": "smalltalk", "turns": [{"user": "hi"}]}, "category 'smalltalk'"),
        (
            {"name": "scenario typo", "category": "knowledge", "caller": "x", "turns": [{"user": "hi"}]},
            "unknown key(s) ['caller']",
        ),
    ],
)
def test_unknown_keys_and_categories_are_errors(tmp_path, scenario, message):
    import yaml

    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"scenarios": [scenario]}))
    with pytest.raises(ValueError) as exc:
        load_scenarios([f])
    assert message in str(exc.value) and scenario["name"] in str(exc.value)
    assert main([str(f)]) == 2


def test_cli_reports_per_category_and_sets_its_exit_code_on_turn_accuracy(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(
        "scenarios:\n"
        "  - name: hours\n    category: knowledge\n"
        "    turns: [{user: 'what time do you open', expect_reply_contains: Monday, expect_kb: true},"
        " {user: 'thanks'}]\n"
        "  - name: impossible\n    category: small_talk\n    turns: [{user: 'hello', expect_escalation: true}]\n"
    )
    assert main([str(f)]) == 1
    out = capsys.readouterr().out
    assert "PASS  hours" in out and "FAIL  impossible" in out and "1/2 scenarios passed (50%)" in out
    assert "knowledge         1/1" in out and "small_talk        0/1" in out
    assert "1/2 turns passed (50.0%)" in out  # the turn without expectations only sets the scene
    assert main([str(f), "--min-success", "0.5"]) == 0


def test_kb_reindexes_when_documents_change(tmp_path):
    import asyncio

    from deployments.embeddings.engine import Embedder
    from deployments.knowledge.engine import KnowledgeBase

    e = Embedder()

    async def em(texts):
        return e.embed(texts)

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Pets\n\n## Dogs\nWe allow dogs in the store.\n\n## Cats\nCats stay home.\n")
    kb = KnowledgeBase(tmp_path / "kb", em)
    assert asyncio.run(kb.sync_folder(docs)) == 2 and asyncio.run(kb.sync_folder(docs)) is None
    (docs / "a.md").write_text("# Pets\n\n## Dogs\nDogs are no longer allowed.\n")
    assert asyncio.run(kb.sync_folder(docs)) == 1
    assert kb.count() == 3  # one section, three views (body, heading, its one sentence): the old sections are gone
    assert "no longer" in asyncio.run(kb.answer("can I bring my dog")).text
