"""Knowledge base: Markdown documents chunked, embedded and searched in ChromaDB."""
