"""Fixtures shared across test folders, as plugins (so a test names them without importing)."""

pytest_plugins = ["postgres_component"]
