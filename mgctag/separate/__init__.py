"""Stem separation: every separator returns drums, bass, other, vocals at the input's rate and length."""
