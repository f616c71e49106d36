"""Pounce's distribution name, and the one other distribution that cannot live next to it.

The import name is ``pounce``; the distribution is ``pounce-asgi``, because ``pounce`` on PyPI is an
unrelated project. ``bengal-pounce`` (a dependency of ``bengal-chirp``) also installs a top-level ``pounce``
package, so the two overwrite each other's files in one environment and neither works reliably. pip cannot
refuse that (it has no "conflicts with"), so ``import pounce`` checks and stops with one clear line.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable

DISTRIBUTION = "pounce-asgi"
CONFLICTING_DISTRIBUTION = "bengal-pounce"

# The metadata directory an installer leaves for bengal-pounce, in any of the spellings pip, setuptools
# and older tools use: "bengal_pounce-0.4.0.dist-info", "Bengal-Pounce-0.4.0-py3.11.egg-info",
# "bengal_pounce.egg-info". Not "bengal_pounce_extras-1.0.dist-info", a different project.
_METADATA_DIR = re.compile(r"bengal[-_.]+pounce(-[^/\\]*)?\.(dist|egg)-info", re.IGNORECASE)


class ConflictingDistributionError(ImportError):
    """``bengal-pounce`` is installed in the same environment as Pounce."""


def find_conflicting_distribution(paths: Iterable[str]) -> str | None:
    """The path of an installed ``bengal-pounce``'s metadata directory on ``paths``, or None.

    One directory listing per path entry, done by hand rather than with ``importlib.metadata``: importing
    that module alone costs 10-20 ms, several percent of ``import pounce``, on every start of every worker.
    The standard library's directories are skipped (nothing is installed there, and they are the largest).
    """
    stdlib = os.path.dirname(os.__file__)
    skip = {stdlib, os.path.join(stdlib, "lib-dynload")}
    for entry in paths:
        if entry in skip:
            continue
        try:
            with os.scandir(entry or ".") as entries:
                for item in entries:
                    if item.name[:1] in "bB" and _METADATA_DIR.fullmatch(item.name):
                        return os.path.abspath(os.path.join(entry or ".", item.name))
        except OSError:  # a zip file, a directory that does not exist (yet), one we cannot read
            continue
    return None


def check_no_conflicting_distribution(paths: Iterable[str] | None = None) -> None:
    found = find_conflicting_distribution(sys.path if paths is None else paths)
    if found is not None:
        raise ConflictingDistributionError(
            f"{DISTRIBUTION} and {CONFLICTING_DISTRIBUTION} ({found}) are both installed and both install "
            f"the top-level `pounce` package, overwriting each other's files: uninstall both "
            f"(`pip uninstall {DISTRIBUTION} {CONFLICTING_DISTRIBUTION}`), then install the one you want."
        )
