"""/proc accounting: a server's whole process tree, its memory (RSS and PSS) and CPU time, and
how busy a set of CPUs was, so a report can say who used the CPU while it measured."""

from __future__ import annotations

import dataclasses
import os
import resource
import threading
from pathlib import Path
from typing import Iterable, Sequence

TICKS = os.sysconf("SC_CLK_TCK")


def read_stat(pid: int) -> tuple[int, str, int, int]:
    """(pid, state, ppid, session) from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # comm may contain spaces and parentheses: split on the last ')'.
    fields = raw[raw.rindex(")") + 2:].split()
    return pid, fields[0], int(fields[1]), int(fields[3])


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it, plus anything left in its session."""
    children: dict[int, list[int]] = {}
    sessions: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            pid, _state, ppid, sid = read_stat(int(entry))
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(pid)
        sessions[pid] = sid
    if root not in sessions:
        return []
    found: set[int] = set()
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.add(pid)
        stack.extend(children.get(pid, ()))
    # The server starts in a new session: orphans that were re-parented keep its sid.
    found.update(pid for pid, sid in sessions.items() if sid == root)
    return sorted(found)


def alive(pids: Iterable[int]) -> bool:
    for pid in pids:
        try:
            state = read_stat(pid)[1]
        except OSError:
            continue
        if state != "Z":  # zombies of a dead parent are reaped by init eventually
            return True
    return False


def _kib(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclasses.dataclass(frozen=True)
class MemorySample:
    # Summed VmRSS counts pages shared between forked workers once per process, so it overstates
    # a pre-fork server; PSS splits shared pages between their sharers and adds up honestly.
    rss_bytes: int
    pss_bytes: int
    processes: int


def tree_memory(root: int) -> MemorySample:
    rss = pss = count = 0
    for pid in process_tree(root):
        vm = _kib(f"/proc/{pid}/status", "VmRSS:")
        if not vm:
            continue
        rss += vm
        pss += _kib(f"/proc/{pid}/smaps_rollup", "Pss:")
        count += 1
    return MemorySample(rss * 1024, pss * 1024, count)


class MemorySampler:
    """Samples the tree's memory in a background thread and keeps the peaks (RSS and PSS apart)."""

    def __init__(self, root: int, interval: float = 0.25) -> None:
        self._root = root
        self._interval = interval
        self._stop = threading.Event()
        self.peak = MemorySample(0, 0, 0)
        self.peak_pss_bytes = 0
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)

    def _run(self) -> None:
        while True:
            sample = tree_memory(self._root)
            if sample.rss_bytes > self.peak.rss_bytes:
                self.peak = sample
            self.peak_pss_bytes = max(self.peak_pss_bytes, sample.pss_bytes)
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def tree_cpu_ticks(root: int) -> int:
    """User + system clock ticks used so far by every process of the tree."""
    ticks = 0
    for pid in process_tree(root):
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks


def cpu_busy_ticks(cpus: Sequence[int]) -> tuple[int, int]:
    """(busy, total) clock ticks of ``cpus`` since boot, from /proc/stat."""
    busy = total = 0
    wanted = {f"cpu{c}" for c in cpus}
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            parts = line.split()
            if parts and parts[0] in wanted:
                values = [int(v) for v in parts[1:9]]  # user nice system idle iowait irq softirq steal
                total += sum(values)
                busy += sum(values) - values[3] - values[4]
    except OSError:
        pass
    return busy, total


def children_cpu_seconds() -> float:
    """CPU time of every child this process has reaped: the load generators' cost."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclasses.dataclass(frozen=True)
class CpuWindow:
    """CPU use over one measured run: the server tree, the load generator, and everyone else."""

    server_seconds: float
    server_pct: float  # of the server CPUs' capacity
    server_other_pct: float  # other processes on the server CPUs: noise
    load_seconds: float
    load_pct: float  # of the load CPUs' capacity; near 100 means the generator set the pace
    load_other_pct: float


class CpuMeter:
    """Snapshots of the server tree and both CPU sets before and after a run.

    The load generator's own CPU time is handed to ``stop``: wrk and h2load are measured by
    RUSAGE_CHILDREN around their run, the built-in generator's processes report theirs.
    """

    def __init__(self, root: int, server_cpus: Sequence[int], load_cpus: Sequence[int]) -> None:
        self._root = root
        self._server_cpus = tuple(server_cpus)
        self._load_cpus = tuple(load_cpus)
        self._tree = tree_cpu_ticks(root)
        self._server = cpu_busy_ticks(server_cpus)
        self._load = cpu_busy_ticks(load_cpus)

    def stop(self, load_seconds: float) -> CpuWindow:
        tree = tree_cpu_ticks(self._root) - self._tree
        server = cpu_busy_ticks(self._server_cpus)
        load = cpu_busy_ticks(self._load_cpus)
        server_pct, server_other = _shares(self._server, server, tree / TICKS)
        load_pct, load_other = _shares(self._load, load, load_seconds)
        if set(self._server_cpus) & set(self._load_cpus):
            # Shared CPUs: the "others" figure would count the server and generator against each other.
            server_other = max(0.0, server_other - load_pct)
            load_other = max(0.0, load_other - server_pct)
        return CpuWindow(tree / TICKS, server_pct, server_other, load_seconds, load_pct, load_other)


def _shares(before: tuple[int, int], after: tuple[int, int], own_seconds: float) -> tuple[float, float]:
    total_s = (after[1] - before[1]) / TICKS
    if total_s <= 0:
        return float("nan"), float("nan")
    busy_s = (after[0] - before[0]) / TICKS
    return 100.0 * own_seconds / total_s, max(0.0, 100.0 * (busy_s - own_seconds) / total_s)
