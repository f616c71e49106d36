"""Event loop factories. Pounce runs on the standard library's asyncio loop only (no uvloop)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def asyncio_loop_factory(use_subprocess: bool = False) -> Callable[[], asyncio.AbstractEventLoop]:
    # The selector loop is asyncio's default on POSIX; naming it keeps custom policies from swapping it.
    return asyncio.SelectorEventLoop


def auto_loop_factory(use_subprocess: bool = False) -> Callable[[], asyncio.AbstractEventLoop]:
    # "auto" in Uvicorn prefers uvloop; Pounce stays pure Python, so auto is asyncio.
    return asyncio_loop_factory(use_subprocess=use_subprocess)
