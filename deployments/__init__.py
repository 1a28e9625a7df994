"""One package per Serve deployment or Ray actor: a pure engine beside its thin wrapper."""
