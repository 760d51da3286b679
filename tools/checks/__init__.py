"""Checks: end-to-end pass/fail runs (a real browser, a SIGKILL soak) with an exit status.

Run as `python -m tools.checks.NAME`.
"""
