"""Builders of training and evaluation data, kept outside the repository (run with `python -m`)."""
