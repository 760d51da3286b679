"""Audio in: decoding, analysis windows, features."""
