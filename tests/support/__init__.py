"""Helpers shared by the test suite: the offline wheelhouse, fixture wheels, plugin venvs."""
