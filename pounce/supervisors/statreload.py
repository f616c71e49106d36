"""Reload by polling modification times of ``*.py`` files: no dependency, Uvicorn's semantics."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from socket import socket
from typing import TYPE_CHECKING

from pounce.supervisors.basereload import BaseReload

if TYPE_CHECKING:
    from pounce.config import Config

logger = logging.getLogger("uvicorn.error")


class StatReload(BaseReload):
    def __init__(
        self,
        config: Config,
        target: Callable[[list[socket] | None], None] | None,
        sockets: list[socket],
    ) -> None:
        super().__init__(config, target, sockets)
        self.reloader_name = "StatReload"
        self.mtimes: dict[Path, float] = {}

        if config.reload_excludes or config.reload_includes:
            logger.warning("--reload-include and --reload-exclude have no effect unless watchfiles is installed.")

    def should_restart(self) -> list[Path] | None:
        self.pause()

        changed: list[Path] = []
        for file in self.iter_py_files():
            try:
                mtime = file.stat().st_mtime
            except OSError:  # deleted between the listing and the stat
                continue

            old_time = self.mtimes.get(file)
            # First sight of a file is its baseline, not a change.
            self.mtimes[file] = mtime
            if old_time is not None and mtime > old_time:
                changed.append(file)
        # The new times are kept (not reset on restart, as Uvicorn does), so a file saved while
        # the restart is under way is still seen as changed on the next pass.
        return changed or None

    def iter_py_files(self) -> Iterator[Path]:
        for reload_dir in self.config.reload_dirs:
            for path in list(reload_dir.rglob("*.py")):
                yield path.resolve()
