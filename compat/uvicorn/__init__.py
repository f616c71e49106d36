"""``uvicorn``, backed by Pounce.

This package lets code and tooling written for Uvicorn run on Pounce unchanged: ``uvicorn.run``,
``uvicorn.Config``, ``uvicorn.Server``, ``uvicorn.main:main``, ``uvicorn.workers.UvicornWorker`` and every
``uvicorn.X`` module path resolve to Pounce's own objects (see ``_pounce_compat`` for how).
"""

from __future__ import annotations

from uvicorn._pounce_compat import check_no_real_uvicorn, install_finder, install_version_line

check_no_real_uvicorn()
install_finder()

import importlib  # noqa: E402

import pounce as _pounce  # noqa: E402

# As in Uvicorn, `import uvicorn` makes `uvicorn.config`, `uvicorn.server` and `uvicorn.main` importable
# attributes; then `uvicorn.main` is rebound to the CLI function, exactly as Uvicorn's package does.
for _submodule in ("config", "server", "main", "importer", "logging"):
    importlib.import_module(f"{__name__}.{_submodule}")
del _submodule

from pounce.config import Config  # noqa: E402
from pounce.main import main, run  # noqa: E402
from pounce.server import Server  # noqa: E402

# The Uvicorn release whose interface this shim provides; tools that gate features on
# `uvicorn.__version__` compare against Uvicorn's numbering, not Pounce's.
__version__ = "0.54.0"
__pounce_version__: str = _pounce.__version__

# `uvicorn --version` names that version in Uvicorn's words (and says it is Pounce).
install_version_line(main)

__all__ = ["Config", "Server", "main", "run"]
