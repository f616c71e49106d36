"""Hypothesis strategies shared by the property-based tests (``tests/test_properties_*.py``).

Three kinds of input feed every sans-I/O reader we fuzz:

* ``split_points`` / ``feed_chunks``: one byte string cut into the pieces successive reads would
  deliver, because every reader must give the same answer however TCP segments the stream;
* ``mutated``: a valid input damaged the way a hostile or broken peer would (byte flips, inserted
  CR/LF/NUL/SP/colon/high bytes, deletions, truncation, duplicated spans and lines);
* format-specific generators of *valid* input (in the test modules), so the properties reach the
  deep states a parser only enters after accepting a well-formed prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# The base settings of every property: no example database (CI machines start clean, and a failure must
# reproduce from the printed seed / @reproduce_failure blob, not from a local cache), no deadline (a slow
# shared CI box must not turn a timing hiccup into a failure; hangs are pytest-timeout's job), and the
# "too slow" health check off for the socket-driven HTTP/2 property. A settings object rather than a
# loaded profile, so importing this module changes nothing for other tests. Each test adds its own
# ``max_examples``, sized so that all the property files together run in a few seconds.
BASE_SETTINGS = settings(
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# RFC 9110 §5.6.2: tchar.
TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

# The bytes that most often break line-oriented and length-prefixed parsers.
INTERESTING_BYTES = b"\r\n\x00 \t:;\x7f\x80\xff0Ff\x01"
INTERESTING_SEQUENCES = (b"\r\n", b"\r\n\r\n", b"\n", b"\r", b": ", b" ", b"\x00", b"0\r\n\r\n", b"\xff\xff")


def tokens(min_size: int = 1, max_size: int = 12) -> st.SearchStrategy[bytes]:
    """RFC 9110 tokens (methods, field names, chunk-extension names)."""
    return st.text(alphabet=TCHARS, min_size=min_size, max_size=max_size).map(str.encode)


@st.composite
def split_points(draw: st.DrawFn, length: int, max_cuts: int = 12) -> list[int]:
    """Sorted cut positions in ``range(1, length)``: where reads would end."""
    if length < 2:
        return []
    return sorted(set(draw(st.lists(st.integers(1, length - 1), max_size=max_cuts))))


def cut(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` as the reads ending at ``cuts`` would deliver it (never an empty read)."""
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a] or [data]


@st.composite
def feed_chunks(draw: st.DrawFn, data: bytes, max_cuts: int = 12) -> list[bytes]:
    """``data`` in arbitrary pieces; sometimes one byte at a time, the harshest segmentation."""
    if len(data) <= 64 and draw(st.integers(0, 9)) == 0:
        return [data[i : i + 1] for i in range(len(data))] or [data]
    return cut(data, draw(split_points(len(data), max_cuts)))


@st.composite
def mutated(draw: st.DrawFn, data: bytes, max_mutations: int = 4, line_sep: bytes | None = None) -> bytes:
    """``data`` with 1..``max_mutations`` random damages applied in turn.

    With ``line_sep``, duplicating or dropping a whole line (a header field line, say) is one of them:
    repeated framing fields are where parsers most often disagree.
    """
    out = bytearray(data)
    kinds = ["flip", "overwrite", "insert", "insert_seq", "delete", "truncate", "duplicate"]
    if line_sep is not None:
        kinds += ["dup_line", "drop_line"]
    for _ in range(draw(st.integers(1, max_mutations))):
        kind = draw(st.sampled_from(kinds))
        n = len(out)
        if kind == "flip" and n:
            i = draw(st.integers(0, n - 1))
            out[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite" and n:
            i = draw(st.integers(0, n - 1))
            out[i] = draw(st.sampled_from(INTERESTING_BYTES))
        elif kind == "insert":
            i = draw(st.integers(0, n))
            out[i:i] = bytes([draw(st.sampled_from(INTERESTING_BYTES))])
        elif kind == "insert_seq":
            i = draw(st.integers(0, n))
            out[i:i] = draw(st.sampled_from(INTERESTING_SEQUENCES))
        elif kind == "delete" and n:
            i = draw(st.integers(0, n - 1))
            del out[i : i + draw(st.integers(1, 8))]
        elif kind == "truncate" and n:
            del out[draw(st.integers(0, n - 1)) :]
        elif kind == "duplicate" and n:
            i = draw(st.integers(0, n - 1))
            j = draw(st.integers(i + 1, min(n, i + 32)))
            out[j:j] = out[i:j]
        elif kind in ("dup_line", "drop_line") and line_sep is not None:
            lines = bytes(out).split(line_sep)
            if len(lines) > 1:
                k = draw(st.integers(0, len(lines) - 1))
                if kind == "dup_line":
                    lines.insert(k, lines[k])
                else:
                    del lines[k]
                out = bytearray(line_sep.join(lines))
    return bytes(out)
