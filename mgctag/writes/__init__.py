"""Changing files: the run that records it, the plan for each track, and the writers."""
