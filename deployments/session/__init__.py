"""session capability: a pure engine plus its thin Ray wrapper."""
