"""Supervisors: dev reload, process workers, thread workers, and ``run_supervised`` to pick one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pounce.supervisors.basereload import BaseReload
from pounce.supervisors.multiprocess import Multiprocess
from pounce.supervisors.supervise import run_supervised
from pounce.supervisors.threads import ThreadWorkers

if TYPE_CHECKING:
    ChangeReload: type[BaseReload]
else:
    try:
        from pounce.supervisors.watchfilesreload import WatchFilesReload as ChangeReload
    except ImportError:  # watchfiles is optional: poll instead
        from pounce.supervisors.statreload import StatReload as ChangeReload

__all__ = ["BaseReload", "ChangeReload", "Multiprocess", "ThreadWorkers", "run_supervised"]
