"""Retrieval over a ChromaDB persistent collection, embedded by our own MiniLM.

Embeddings are always passed explicitly: chroma's default embedding function downloads a
model, which fails offline.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

from deployments.dialogue.text import split_sentences
from deployments.knowledge.lexical import LexicalIndex
from deployments.policy.escalation import EmbedMany
from deployments.policy.language import content, words

COLLECTION = "support_kb"
VIEWS_VERSION = "2"  # how sections are cut into views: a change re-indexes unchanged documents
# Cosine similarity is not a confidence: MiniLM puts off-topic questions under 0.35 and spoken
# paraphrases of what a section says at 0.45-0.8. A logistic curve fitted to labelled probes
# (in-domain paraphrases and off-topic questions, none from the evaluation sets) maps it to one:
# cosine 0.35 -> 0.1, 0.5 -> 0.6, 0.6 -> 0.9. Monotone, so the ranking is the cosine's.
CALIBRATION_MIDPOINT, CALIBRATION_SLOPE = 0.477, 17.35
# Keyword overlap (`lexical.LexicalIndex`, 0..1) adds at most this much to a section's cosine:
# enough to lift the section that holds the caller's key words over a general one, and a
# paraphrase the embedding half-recognises over the bar; nothing for a question with no KB words.
LEXICAL_WEIGHT = 0.25
MAX_VIEWS = 64


def calibrated(similarity: float) -> float:
    """The confidence, 0..1, that the best section answers a question this similar to it."""
    return round(1.0 / (1.0 + math.exp(-CALIBRATION_SLOPE * (similarity - CALIBRATION_MIDPOINT))), 3)


@dataclass
class Chunk:
    id: str
    source: str
    title: str
    text: str


@dataclass
class Answer:
    text: str
    confidence: float  # calibrated from `similarity`, 0..1 (see `calibrated`)
    source: str
    title: str
    similarity: float = 0.0  # cosine similarity of the best view


def chunk_markdown(markdown: str, source: str) -> list[Chunk]:
    """One chunk per `##` section (the `#` title prefixed), Markdown syntax stripped for speech."""
    doc_title = ""
    chunks, title, lines = [], "", []

    def flush():
        body = " ".join(line.strip() for line in lines if line.strip())
        body = re.sub(r"[*_`>#]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", body)
        body = re.sub(r"^\s*[-+] ", "", body)
        if body:
            heading = " - ".join(t for t in (doc_title, title) if t)
            cid = hashlib.sha1(f"{source}:{heading}:{body}".encode()).hexdigest()[:16]
            chunks.append(Chunk(cid, source, heading, body))

    for line in markdown.splitlines():
        if line.startswith("# "):
            doc_title = line[2:].strip()
        elif line.startswith("## "):
            flush()
            title, lines = line[3:].strip(), []
        else:
            lines.append(re.sub(r"^\s*[-*+]\s+", "", line))
    flush()
    return chunks


class KnowledgeBase:
    def __init__(self, path: Path | str, embed_many: EmbedMany):
        import chromadb

        self._client = chromadb.PersistentClient(path=str(path), settings=chromadb.Settings(anonymized_telemetry=False))
        self._collection = self._client.get_or_create_collection(
            COLLECTION, embedding_function=None, metadata={"hnsw:space": "cosine"}
        )
        self._embed_many = embed_many
        self._lexical_index: tuple[str | None, LexicalIndex] | None = None

    def count(self) -> int:
        return self._collection.count()

    @staticmethod
    def docs_hash(folder: Path | str) -> str:
        h = hashlib.sha1(VIEWS_VERSION.encode())
        for f in sorted(Path(folder).glob("*.md")):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        return h.hexdigest()[:16]

    def indexed_hash(self) -> str | None:
        return (self._collection.metadata or {}).get("docs_hash")

    async def sync_folder(self, folder: Path | str) -> int | None:
        """Index `folder` unless the collection already holds exactly these documents."""
        if self.indexed_hash() == self.docs_hash(folder):
            return None
        return await self.index_folder(folder)

    async def index_folder(self, folder: Path | str) -> int:
        """Make the collection hold exactly the Markdown files in `folder`; returns the sections."""
        chunks = [c for f in sorted(Path(folder).glob("*.md")) for c in chunk_markdown(f.read_text(), f.name)]
        if not chunks:
            return 0
        # Each section is found by its whole text and by its heading alone: a short spoken
        # question ("do you ship to Canada") matches a short heading better than a paragraph.
        # A heading may carry several phrasings ("Warranty coverage: how long is the guarantee?"):
        # each phrase is a view of its own. So is each sentence of the body: a question about one
        # detail ("do I pay customs") is nearer the sentence that holds it than the whole section.
        views = [(f"{c.id}:body", f"{re.split(r'[:?]', c.title)[0]}. {c.text}", c) for c in chunks]
        for c in chunks:
            phrases = [p.strip() for p in re.split(r"[:?]", c.title.split(" - ")[-1]) if p.strip()]
            views += [(f"{c.id}:title{j}", phrase, c) for j, phrase in enumerate(phrases)]
            views += [(f"{c.id}:sentence{j}", sentence, c) for j, sentence in enumerate(split_sentences(c.text))]
        vectors = await self._embed_many([text for _, text, _ in views])
        self._collection.upsert(
            ids=[vid for vid, _, _ in views],
            embeddings=vectors,
            documents=[c.text for _, _, c in views],
            metadatas=[{"source": c.source, "title": c.title} for _, _, c in views],
        )
        stale = set(self._collection.get(include=[])["ids"]) - {vid for vid, _, _ in views}
        if stale:
            self._collection.delete(ids=sorted(stale))
        self._collection.modify(metadata={"docs_hash": self.docs_hash(folder)})
        return len(chunks)

    async def answer(self, question: str, k: int = 3) -> Answer | None:
        """The best section for `question`, asked as said and as its focus (see `focus`)."""
        if self.count() == 0:
            return None
        vectors = await self._embed_many([question])
        if (focused := focus(question)) and focused != " ".join(words(question)):
            vectors += await self._embed_many([focused])
        # every view is ranked (a few dozen): a section the embedding puts fourth may hold the words
        res = self._collection.query(query_embeddings=vectors, n_results=min(max(k, MAX_VIEWS), self.count()))
        sections: dict[str, tuple[float, dict, str]] = {}  # title -> (best similarity, metadata, text)
        for q in range(len(vectors)):
            for distance, meta, text in zip(res["distances"][q], res["metadatas"][q], res["documents"][q]):
                similarity = max(0.0, 1.0 - distance)
                if similarity > sections.get(meta["title"], (-1.0,))[0]:
                    sections[meta["title"]] = (similarity, meta, text)
        if not sections:
            return None
        lexical = self._lexical().scores(question)
        title = max(sections, key=lambda t: sections[t][0] + LEXICAL_WEIGHT * lexical.get(t, 0.0))
        similarity, meta, text = sections[title]
        combined = min(1.0, similarity + LEXICAL_WEIGHT * lexical.get(title, 0.0))
        return Answer(
            " ".join(spoken_sentences(text)), calibrated(combined), meta["source"], meta["title"], round(similarity, 3)
        )

    def _lexical(self) -> LexicalIndex:
        """The keyword index of the sections now in the collection, rebuilt when they change."""
        version = self.indexed_hash()
        if self._lexical_index is None or self._lexical_index[0] != version:
            got = self._collection.get(include=["documents", "metadatas"])
            sections = {meta["title"]: doc for meta, doc in zip(got["metadatas"], got["documents"])}
            self._lexical_index = (version, LexicalIndex(sections))
        return self._lexical_index[1]


def spoken_sentences(section: str) -> list[str]:
    """What is said of a section that answers: its first three sentences, short for the ear."""
    return split_sentences(section)[:3]


def focus(question: str) -> str:
    """The question inside what was said: its last asked sentence, without leading fillers
    ("Oh, forget it. What are your hours on Saturday?" -> "what are your hours on saturday")."""
    sentences = split_sentences(question)
    asked = [s for s in sentences if s.rstrip().endswith("?")] or sentences or [question]
    return " ".join(content(words(asked[-1])))
