"""Operability: health and readiness, request ids, CORS, metrics and logs.

Pure helpers, free of mitmproxy; ``addons/ops.py`` applies them to flows.
"""
