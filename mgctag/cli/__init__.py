"""The mgctag command line, one module per command group; parsing and printing only."""

from mgctag.cli.app import app, run

__all__ = ["app", "run"]
