"""Sends ``pounce bench ...`` to the bench command; everything else stays the server's command line.

The server's command takes APP as its first argument, so "bench" cannot be a click subcommand
without changing how ``pounce myapp:app`` parses. An APP is always "module:attribute", so a
first argument of exactly ``bench`` is never one.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import click


class ServeOrBench(click.Command):
    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,  # type: ignore[override]
             **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if argv[:1] == ["bench"]:
            from pounce.bench.cli import bench

            return bench.main(argv[1:], prog_name=f"{prog_name or 'pounce'} bench", **extra)
        return super().main(args, prog_name, **extra)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        formatter.write_paragraph()
        formatter.write_text("Benchmark: `pounce bench [APP] [options]` measures Pounce on built-in workloads "
                             "or your APP and compares it with Uvicorn, Granian and Hypercorn "
                             "(`pounce bench --help`).")
