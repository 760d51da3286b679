"""mgctag: tag a local music library with genres by listening to it."""

__version__ = "0.1.0"
