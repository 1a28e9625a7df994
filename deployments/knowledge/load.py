"""Index a folder of Markdown documents into the knowledge base.

python -m deployments.knowledge.load [FOLDER] [--store PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import sys


def main(argv: list[str] | None = None) -> int:
    from common.config import get_settings
    from deployments.embeddings.engine import Embedder
    from deployments.knowledge.engine import KnowledgeBase

    settings = get_settings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default=str(settings.kb_docs_path))
    p.add_argument("--store", default=str(settings.kb_store_path))
    args = p.parse_args(argv)
    embedder = Embedder(settings.embeddings_model_path)

    async def embed_many(texts):
        return embedder.embed(texts)

    kb = KnowledgeBase(args.store, embed_many)
    n = asyncio.run(kb.index_folder(args.folder))
    print(f"indexed {n} sections from {args.folder} into {args.store} ({kb.count()} in the collection)")
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main())
