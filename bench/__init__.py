"""Benchmarks of the rrstream pipeline, run through the real HTTP API and WebSocket protocol.

They print a table and write JSON; they assert nothing about time (see bench/README.md).
"""
