"""Benchmarks and measurements (run as `python -m tools.bench.NAME`)."""
