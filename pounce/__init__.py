"""Pounce: a pure-Python ASGI server, a drop-in replacement for Uvicorn."""

from __future__ import annotations

__version__ = "0.1.0"

from pounce.config import Config
from pounce.main import main, run
from pounce.server import Server

__all__ = ["Config", "Server", "__version__", "main", "run"]
