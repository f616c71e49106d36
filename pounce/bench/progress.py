"""The progress line while a benchmark runs: round, server, workload, and about how long is left."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """One line, redrawn each second on a terminal; a plain line per run otherwise (logs, CI)."""

    def __init__(self, runs: int, seconds_per_run: float, stream: TextIO | None = None,
                 enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.left_runs = runs
        self.per_run = seconds_per_run
        self.label = ""
        self.run_ends = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, label: str) -> None:
        """A run begins: ``label`` says which (round, server, workload)."""
        self.label = label
        self.run_ends = time.monotonic() + self.per_run
        self.left_runs -= 1
        if not self.enabled:
            return
        if not self.tty:
            print(f"[bench] {label} ({clock(self._left())} left)", file=self.stream, flush=True)
        elif self._thread is None:
            self._thread = threading.Thread(target=self._tick, name="bench-progress", daemon=True)
            self._thread.start()
        self._draw()

    def note(self, text: str) -> None:
        """A line that stays (a run's result, a warning)."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\x1b[2K")
        print(f"[bench]   {text}", file=self.stream, flush=True)
        self._draw()

    def _left(self) -> float:
        return max(0.0, self.run_ends - time.monotonic()) + self.left_runs * self.per_run

    def _draw(self) -> None:
        if self.tty and self.label:
            self.stream.write(f"\r\x1b[2K[bench] {self.label} - {clock(self._left())} left")
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._draw()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self.tty:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
