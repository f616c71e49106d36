"""Pounce: a pure-Python ASGI server, a drop-in replacement for Uvicorn."""

from __future__ import annotations

__version__ = "0.1.0"

# First, before anything else of Pounce's is imported: if bengal-pounce overwrote some of these files, what
# follows could fail in ways that would not name the cause.
from pounce._distribution import check_no_conflicting_distribution

check_no_conflicting_distribution()

from pounce.config import Config  # noqa: E402
from pounce.main import main, run  # noqa: E402
from pounce.server import Server  # noqa: E402

__all__ = ["Config", "Server", "__version__", "main", "run"]
