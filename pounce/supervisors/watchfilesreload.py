"""Reload driven by ``watchfiles`` (inotify and friends), used when it is installed.

Honours ``--reload-include`` / ``--reload-exclude`` with Uvicorn's rules: ``*.py`` is included
by default, dot-files, compiled files, editor swap files and ``~`` backups are excluded by
default, and either default can be switched off by naming it on the other list.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from socket import socket
from typing import TYPE_CHECKING

from watchfiles import watch

from pounce.supervisors.basereload import BaseReload

if TYPE_CHECKING:
    from pounce.config import Config

DEFAULT_INCLUDES = ("*.py",)
DEFAULT_EXCLUDES = (".*", ".py[cod]", ".sw.*", "~*")


class FileFilter:
    def __init__(self, config: Config) -> None:
        includes = [pattern for pattern in DEFAULT_INCLUDES if pattern not in config.reload_excludes]
        self.includes = sorted(set(includes + list(config.reload_includes)))

        excludes = [pattern for pattern in DEFAULT_EXCLUDES if pattern not in config.reload_includes]
        self.exclude_dirs: list[Path] = []
        for pattern in config.reload_excludes:
            path = Path(pattern)
            try:
                is_dir = path.is_dir()
            except OSError:  # pragma: no cover - e.g. patterns Windows cannot stat
                is_dir = False
            if is_dir:
                self.exclude_dirs.append(path)
            else:
                excludes.append(pattern)
        self.excludes = sorted(set(excludes))

    def __call__(self, path: Path) -> bool:
        for include_pattern in self.includes:
            if path.match(include_pattern):
                # A file named explicitly wins over every exclude.
                if str(path).endswith(include_pattern):
                    return True
                if any(exclude_dir in path.parents for exclude_dir in self.exclude_dirs):
                    return False
                if any(path.match(exclude_pattern) for exclude_pattern in self.excludes):
                    return False
                return True
        return False


class WatchFilesReload(BaseReload):
    def __init__(
        self,
        config: Config,
        target: Callable[[list[socket] | None], None] | None,
        sockets: list[socket],
    ) -> None:
        super().__init__(config, target, sockets)
        self.reloader_name = "WatchFiles"
        self.reload_dirs: list[Path] = list(config.reload_dirs)
        self.watch_filter = FileFilter(config)
        self.watcher = watch(
            *self.reload_dirs,
            watch_filter=None,
            stop_event=self.should_exit,
            # Yield on timeout so the loop (and tests) never block forever on a quiet tree.
            yield_on_timeout=True,
            ignore_permission_denied=True,
        )

    def should_restart(self) -> list[Path] | None:
        self.pause()

        changes = next(self.watcher)
        if changes:
            unique_paths = {Path(change[1]) for change in changes}
            return [path for path in unique_paths if self.watch_filter(path)]
        return None
