"""Policy: the ordered checks that run before the dialogue engine, and slot parsing."""
