"""Retrieval over a ChromaDB persistent collection, embedded by our own MiniLM.

Embeddings are always passed explicitly: chroma's default embedding function downloads a
model, which fails offline.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from deployments.dialogue.text import split_sentences

EmbedMany = Callable[[list[str]], Awaitable[list[list[float]]]]
COLLECTION = "support_kb"


@dataclass
class Chunk:
    id: str
    source: str
    title: str
    text: str


@dataclass
class Answer:
    text: str
    confidence: float  # cosine similarity of the best chunk, 0..1
    source: str
    title: str


def chunk_markdown(markdown: str, source: str) -> list[Chunk]:
    """One chunk per `##` section (the `#` title prefixed), Markdown syntax stripped for speech."""
    doc_title = ""
    chunks, title, lines = [], "", []

    def flush():
        body = " ".join(l.strip() for l in lines if l.strip())
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
        self._collection = self._client.get_or_create_collection(COLLECTION, embedding_function=None, metadata={"hnsw:space": "cosine"})
        self._embed_many = embed_many

    def count(self) -> int:
        return self._collection.count()

    @staticmethod
    def docs_hash(folder: Path | str) -> str:
        h = hashlib.sha1()
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
        # each phrase is a view of its own.
        views = [(f"{c.id}:body", f"{re.split(r'[:?]', c.title)[0]}. {c.text}", c) for c in chunks]
        for c in chunks:
            phrases = [p.strip() for p in re.split(r"[:?]", c.title.split(" - ")[-1]) if p.strip()]
            views += [(f"{c.id}:title{j}", phrase, c) for j, phrase in enumerate(phrases)]
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
        if self.count() == 0:
            return None
        [vector] = await self._embed_many([question])
        res = self._collection.query(query_embeddings=[vector], n_results=min(k, self.count()))
        if not res["ids"][0]:
            return None
        meta, text, distance = res["metadatas"][0][0], res["documents"][0][0], res["distances"][0][0]
        spoken = " ".join(split_sentences(text)[:3])  # short, for the ear
        return Answer(spoken, round(max(0.0, 1.0 - distance), 3), meta["source"], meta["title"])
