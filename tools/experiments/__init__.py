"""Experiments and evaluations that are not part of the product (run with `python -m`)."""
