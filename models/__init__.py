"""Typed data models shared by every process: session state and the wire protocol.

Kept free of heavy imports (no numpy, no torch) so the per-call session actor stays small.
"""
