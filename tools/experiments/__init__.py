"""Experiments: training, evaluation and distillation runs behind the bundled models.

Run as `python -m tools.experiments.NAME`.
"""
