"""One call's conversation: listener, turns, speaker, timers, wired by call.Call."""
