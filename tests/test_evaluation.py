"""The offline evaluation runs in the suite: every shipped scenario passes on the local engine."""

import pytest

from serve_app.evaluate import DEFAULT_SCENARIOS, build_agent, load_scenarios, main, run_scenarios


@pytest.fixture(scope="module")
def make_agent(tmp_path_factory):
    return build_agent(tmp_path_factory.mktemp("eval"))


def test_every_shipped_scenario_passes(make_agent):
    scenarios = load_scenarios([DEFAULT_SCENARIOS])
    assert len(scenarios) >= 30
    failed = [(o.name, o.failures) for o in run_scenarios(scenarios, make_agent) if not o.passed]
    assert failed == []


def test_a_wrong_expectation_fails_with_its_reason(make_agent):
    wrong = [
        {"name": "bad tool", "turns": [{"user": "what time do you open", "expect_tool": "order_status"}]},
        {"name": "bad text", "turns": [{"user": "what time do you open", "expect_reply_contains": "we never open"}]},
        {"name": "bad auth", "turns": [{"user": "where is my order", "expect_authenticated": True}]},
        {"name": "bad escalation", "turns": [{"user": "what time do you open", "expect_escalation": True}]},
    ]
    outcomes = run_scenarios(wrong, make_agent)
    assert [o.passed for o in outcomes] == [False] * 4
    assert "expected tool order_status" in outcomes[0].failures[0]
    assert "we never open" in outcomes[1].failures[0]


def test_cli_reports_and_sets_its_exit_code(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text("scenarios:\n  - name: hours\n    turns: [{user: 'what time do you open', expect_reply_contains: Monday}]\n"
                 "  - name: impossible\n    turns: [{user: 'hello', expect_escalation: true}]\n")
    assert main([str(f)]) == 1
    out = capsys.readouterr().out
    assert "PASS  hours" in out and "FAIL  impossible" in out and "1/2 scenarios passed (50%)" in out
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
    assert kb.count() == 2  # one section, two views (body, heading): the old sections are gone
    assert "no longer" in asyncio.run(kb.answer("can I bring my dog")).text
