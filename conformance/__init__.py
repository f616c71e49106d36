"""Runs a pinned Uvicorn release's own test suite against Pounce through the ``compat/`` shim."""
