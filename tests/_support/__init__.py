"""Helpers for the test suite: real PostgreSQL clusters and real app servers as subprocesses.

Tests talk to the same processes users run (no in-process ASGI shortcuts), so what passes here
passes in production on both database backends.
"""
