"""Benchmarks: speed, memory and accuracy behind docs/benchmarks.md.

Run as `python -m tools.bench.NAME`.
"""
