"""Bundled model weights (safetensors) and their JSON model cards."""
