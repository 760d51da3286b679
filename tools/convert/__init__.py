"""Converters: published weights into weights/*.safetensors + model cards.

Run as `python -m tools.convert.NAME`.
"""
