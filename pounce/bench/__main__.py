"""``python -m pounce.bench``: the same as ``pounce bench``."""

from pounce.bench.cli import bench

if __name__ == "__main__":
    bench(prog_name="pounce bench")
