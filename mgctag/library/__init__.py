"""The user's library on disk and its record in SQLite."""
