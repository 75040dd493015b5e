"""Temporal workflow code: deterministic, no I/O, no Django (import-linter enforces the last)."""
