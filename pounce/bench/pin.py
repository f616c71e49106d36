"""``python -m pounce.bench.pin CPUS COMMAND...``: taskset for machines without util-linux."""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: python -m pounce.bench.pin CPUS COMMAND [ARGS...]")
    cpus = {int(c) for c in argv[0].split(",")}
    os.sched_setaffinity(0, cpus)
    os.execvp(argv[1], argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
