"""Basics that serve_app/, deployments/ and models/ all use: typed config, secrets, PII masking, dialects, audio.

The bottom layer: it imports none of the other packages, so imports flow one way (tests/test_layering.py).
"""
