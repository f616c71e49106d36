"""Choosing between thread and process workers, and saying why.

Threads only pay off when the interpreter runs without the GIL: then one process holds one copy
of the app and N event loops run Python code in parallel. With the GIL, N threads share one
core for Python code, so ``auto`` picks processes there.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import sysconfig
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

logger = logging.getLogger("uvicorn.error")

WorkerKind = Literal["thread", "process"]
WORKER_MODES = ("auto", "thread", "process")


def free_threaded_build() -> bool:
    """True on a CPython built with ``--disable-gil`` (3.13t and later), whatever the GIL's state now."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def gil_enabled() -> bool:
    """Whether the GIL is on right now. Builds without ``sys._is_gil_enabled`` always have it."""
    probe: Callable[[], bool] | None = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else bool(probe())


@dataclasses.dataclass(frozen=True)
class ModeChoice:
    """The worker kind picked for a run, with the sentence the startup log gives for it."""

    kind: WorkerKind
    reason: str
    # Set when the choice works but not as the user probably hopes (threads under the GIL).
    warning: str | None = None


def choose_mode(requested: str, workers: int) -> ModeChoice:
    """Map ``--worker-mode`` to a worker kind for this interpreter. ``requested`` is validated by the CLI."""
    mode = requested.lower()
    if mode not in WORKER_MODES:
        raise ValueError(f"worker_mode must be one of {', '.join(WORKER_MODES)}, not {requested!r}")
    gil = gil_enabled()
    plural = "s" if workers != 1 else ""
    if mode == "process":
        return ModeChoice("process", f"Using {workers} worker process{'es' if plural else ''} (--worker-mode process).")
    if mode == "thread":
        if not gil:
            return ModeChoice("thread", f"Using {workers} worker thread{plural} (--worker-mode thread); the GIL is disabled.")
        return ModeChoice(
            "thread",
            f"Using {workers} worker thread{plural} (--worker-mode thread).",
            warning=(
                "Thread workers were requested but this interpreter runs with the GIL enabled: "
                f"the {workers} worker thread{plural} will not run Python code in parallel. "
                "Use --worker-mode process, or a free-threaded Python (3.13t+) with the GIL disabled."
            ),
        )
    if not gil:
        return ModeChoice(
            "thread",
            f"Using {workers} worker thread{plural} in one process: the GIL is disabled (--worker-mode auto).",
        )
    why = (
        "the GIL was enabled on this free-threaded build (PYTHON_GIL or -X gil)"
        if free_threaded_build()
        else "this interpreter has a GIL"
    )
    return ModeChoice(
        "process", f"Using {workers} worker process{'es' if plural else ''}: {why} (--worker-mode auto)."
    )


@contextmanager
def watch_gil(what: str) -> Iterator[None]:
    """Around an import: if it turns the GIL back on, log loudly and name the module that did it.

    CPython re-enables the GIL (with a RuntimeWarning) when it loads an extension module that has
    not declared free-threading support; every thread worker then runs one at a time.
    """
    before = gil_enabled()
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as recorded:
            warnings.simplefilter("always", RuntimeWarning)
            try:
                yield
            finally:
                caught = list(recorded)
    finally:
        # Outside the recording block: pass on what we caught, but the GIL notes we report ourselves.
        gil_warnings = [str(w.message) for w in caught if "GIL" in str(w.message)]
        for w in caught:
            if str(w.message) not in gil_warnings:
                # warn_explicit (not showwarning) so the user's filters still apply.
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if free_threaded_build() and not before and gil_enabled():
        detail = "; ".join(m.rstrip(".") for m in gil_warnings) if gil_warnings else "an extension module without free-threading support"
        logger.warning(
            "!!! Importing %s re-enabled the GIL: %s. Worker threads will NOT run in parallel. "
            "Use --worker-mode process, upgrade that module, or set PYTHON_GIL=0 if it is known to be safe. !!!",
            what,
            detail,
        )
