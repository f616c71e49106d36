from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from pounce.config import LOGGING_CONFIG

# Config() applies LOGGING_CONFIG, whose "uvicorn" logger does not propagate; pytest's caplog listens on
# the root logger. Let records propagate in tests (as Uvicorn's own test suite does) ...
LOGGING_CONFIG["loggers"]["uvicorn"]["propagate"] = True


@pytest.fixture(autouse=True)
def _restore_server_loggers() -> Iterator[None]:
    # ... and undo what a test's own logging config did to the server loggers, so tests stay independent.
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
    saved = {name: (logging.getLogger(name).level, logging.getLogger(name).propagate) for name in names}
    yield
    for name, (level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = propagate
    logging.getLogger("uvicorn").propagate = True
