"""Experiments behind the choices in docs/ (run as `python -m tools.experiments.NAME`)."""
