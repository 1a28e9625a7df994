"""The lines the local support agent says word for word to every caller, one TTS request each.

The TTS replica caches the audio of these lines only (`deployments/tts/cache.py` says why): the
set is made from the agent's own constants and the knowledge-base documents, never from what a
caller said, so no personal data can enter it. A line built from a caller's data (an order
number, a name, attempts left) is not declared here and is synthesized afresh every time.
"""

from __future__ import annotations

from pathlib import Path

from deployments.dialogue.engine import GREETING
from deployments.dialogue.knowledge_answers import NOT_SURE
from deployments.dialogue.support import CANNED, HANDOFF, PIN_PROMPT, REFUSAL, VERIFY_FIRST
from deployments.dialogue.text import split_sentences
from deployments.knowledge.engine import chunk_markdown, spoken_sentences
from deployments.policy.consent import DECLINED_REPLY

# Said at a turn nearly every call reaches: made when a TTS replica starts, after the call's
# opening (the notice and the greeting), so the first caller already hears them from the cache.
PREWARM = [*VERIFY_FIRST.values(), PIN_PROMPT, *HANDOFF.values()]


def notice_lines(on: bool, notice: str) -> list[str]:
    """The recording notice's sentences (VOICE_CONSENT_NOTICE_ON, VOICE_CONSENT_NOTICE), said before
    the greeting: a fixed line from the operator's configuration, never from a caller."""
    return split_sentences(notice) if on else []


def greeting_lines(greeting: str) -> list[str]:
    """The greeting's sentences (VOICE_GREETING): one TTS request each, like every reply."""
    return split_sentences(greeting)


def prewarm_lines(notice: list[str] = (), greeting: list[str] = GREETING) -> list[str]:
    """What a TTS replica makes at start: the notice, the greeting and the lines of `PREWARM`."""
    return [*notice, *greeting, *PREWARM]


def knowledge_lines(kb_docs_path: Path | str | None) -> list[str]:
    """Every sentence of a knowledge-base answer, as the agent says it (one request per sentence)."""
    if kb_docs_path is None or not Path(kb_docs_path).is_dir():
        return []
    return [
        sentence
        for doc in sorted(Path(kb_docs_path).glob("*.md"))
        for chunk in chunk_markdown(doc.read_text(encoding="utf-8"), doc.name)
        for sentence in spoken_sentences(chunk.text)
    ]


def fixed_lines(
    kb_docs_path: Path | str | None = None, notice: list[str] = (), greeting: list[str] = GREETING
) -> list[str]:
    """The agent's fixed lines: the recording notice and its decline's answer, greeting, PIN
    prompts, hand-offs, canned replies, refusals, and the knowledge base's answers from the
    documents in `kb_docs_path`."""
    lines = [*prewarm_lines(notice, greeting), DECLINED_REPLY, *CANNED.values(), REFUSAL, *NOT_SURE]
    return [*lines, *knowledge_lines(kb_docs_path)]
