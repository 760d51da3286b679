"""Data builders and fetchers: corpora and training data, kept outside the repository.

Run as `python -m tools.data.NAME`.
"""
