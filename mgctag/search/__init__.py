"""Finding and showing tracks by their stored embeddings: similar songs, the library map, and the
playlists and tables they export."""
