"""Integration fixtures (database, cluster, clean, counter) live in tests/conftest.py."""
