"""Running as a container's main process: a pid file for tools that signal us, and reaping orphans as PID 1.

* ``--pid-file PATH``: written once the listening sockets are bound (so a tool that finds the file can
  also find the port), removed on exit -- only if it still names this process, so a new server that
  already wrote its own is not robbed of it.
* **Orphans.** In a container the server is often PID 1, and every process whose parent exits is
  re-parented to it: a worker's app that starts ``sh -c 'cmd &'`` leaves ``cmd`` to us. Nobody else
  will ``wait()`` for it, so once it exits it stays a zombie forever. The process-worker supervisor
  runs no app code, so a zombie child of it that is not one of its workers (or multiprocessing's
  resource tracker) can only be such an orphan, and is reaped. A single server or thread workers run
  the app in this very process, where an exited child may be the app's own subprocess still to be
  waited for; reaping it would steal its exit status, so those modes leave it to an init
  (``docker run --init``, tini) -- see the README.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger("uvicorn.error")

class PidFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._written = False

    def write(self) -> None:
        """Write our pid (atomically: a reader never sees a half-written file). A failure is logged, not fatal."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(f"{os.getpid()}\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            logger.error("Cannot write the pid file %s: %s", self.path, exc)
            return
        self._written = True

    def remove(self) -> None:
        if not self._written:
            return
        self._written = False
        try:
            if self.path.read_text().strip() == str(os.getpid()):
                self.path.unlink()
        except OSError:
            pass


def is_init() -> bool:
    """Whether orphans are re-parented to this process: PID 1 of its namespace."""
    return os.getpid() == 1


def zombie_children(parent: int | None = None) -> list[int]:
    """The children of ``parent`` (us) that have exited and not been waited for, read from /proc (empty
    where there is none)."""
    me = os.getpid() if parent is None else parent
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:
                stat = file.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces or parentheses, so split after the last ')'.
        fields = stat.rsplit(b")", 1)[-1].split()
        if len(fields) >= 2 and fields[0] == b"Z" and int(fields[1]) == me:
            found.append(int(entry))
    return found


def reap_orphans(ours: Iterable[int]) -> list[int]:
    """Reap exited children that are not in ``ours`` (the caller's own, which it waits for itself)."""
    keep = set(ours)
    reaped = []
    for pid in zombie_children():
        if pid in keep:
            continue
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if done:
            reaped.append(pid)
    if reaped:
        logger.debug("Reaped orphaned processes %s", reaped)
    return reaped


__all__ = ["PidFile", "is_init", "reap_orphans", "zombie_children"]
