"""Developer tools that are not part of the product (run as `python -m tools.NAME`)."""
