"""``pounce bench``: measure Pounce, and compare it with its peers, in a way worth quoting.

One engine, used by the command and by the scripts in benchmarks/: servers started in their own
session and pinned to their own CPUs (:mod:`.servers`, :mod:`.machine`), load from wrk, h2load or
the built-in generator on other CPUs (:mod:`.load`), CPU and memory of the server's whole process
tree from /proc (:mod:`.procs`), and reports as a table, JSON and HTML (:mod:`.report`, :mod:`.html`).
Nothing here is imported by the server itself.
"""
