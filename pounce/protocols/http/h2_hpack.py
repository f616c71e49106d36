"""HPACK (RFC 7541) encoding and decoding that skip the work for header blocks seen before.

Most header blocks on a connection repeat: a client sends the same request head again and again, and an
app answers with the same status and fields (the ``date`` field changes once a second). hpack encodes
and decodes each block field by field in Python, about a fifth of an HTTP/2 request's CPU time.

A block can be reused exactly when coding it left the dynamic table (RFC 7541 §2.3.2) as it was: coding
is then a pure function of the block and the table, so the same block against the same table codes to
the same result. That is the case for a block made only of indexed fields (§6.1), which is what a
repeated block becomes once its fields are in the table. A block that adds entries, evicts them, or
changes the table size is coded in full and not kept, and any change of the table empties the cache.

The table is identified without walking it: its entry count, its newest entry (entries are only ever
added at the front, §2.3.3, and a reference to it is held, so a new entry cannot reuse its identity)
and its size limit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hpack import Decoder, Encoder, HeaderTuple
from hpack.table import HeaderTable

# Distinct blocks kept per table state: a client's few request shapes, an app's few response shapes.
MAX_CACHED = 32


class _TableState:
    """What identifies a dynamic table's contents, cheaply."""

    __slots__ = ("length", "newest", "maxsize")

    def __init__(self, table: HeaderTable) -> None:
        entries = table.dynamic_entries
        self.length = len(entries)
        self.newest: object = entries[0] if entries else None
        self.maxsize = table.maxsize

    def matches(self, table: HeaderTable) -> bool:
        entries = table.dynamic_entries
        return (
            len(entries) == self.length
            and (entries[0] if entries else None) is self.newest
            and table.maxsize == self.maxsize
        )


class CachingEncoder(Encoder):
    """hpack's encoder, answering a block it encoded before against the same table from a cache."""

    def __init__(self) -> None:
        super().__init__()
        self._state = _TableState(self.header_table)
        self._blocks: dict[tuple[Any, ...], bytes] = {}

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        if self.table_size_changes or isinstance(headers, dict):
            # A pending size update goes first in the next block (RFC 7541 §4.2): no reuse then.
            return super().encode(headers, huffman)
        key = (huffman, *headers)
        table = self.header_table
        if self._state.matches(table):
            block = self._blocks.get(key)
            if block is not None:
                return block
            before: _TableState | None = self._state
        else:
            before = None
        block = super().encode(key[1:], huffman)
        if before is not None and before.matches(table):
            # Nothing was added: every field was indexed (a field sent never-indexed, §6.2.3, changes
            # nothing either, but would be encoded differently were it sent as an ordinary field, so
            # only blocks of ordinary fields are kept).
            if all(type(field) is HeaderTuple or type(field) is tuple for field in key[1:]):
                if len(self._blocks) >= MAX_CACHED:
                    self._blocks.clear()
                self._blocks[key] = block
        else:
            self._state = _TableState(table)
            self._blocks.clear()
        return block


class CachingDecoder(Decoder):
    """hpack's decoder, answering a block it decoded before against the same table from a cache."""

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(max_header_list_size)
        self._state = _TableState(self.header_table)
        self._limits = (self.max_header_list_size, self.max_allowed_table_size)
        self._blocks: dict[tuple[bytes, bool], list[HeaderTuple]] = {}

    def decode(self, data: bytes, raw: bool = False) -> Iterable[HeaderTuple]:
        if type(data) is not bytes:
            return super().decode(data, raw)
        table = self.header_table
        limits = (self.max_header_list_size, self.max_allowed_table_size)
        fresh = self._state.matches(table) and limits == self._limits
        if fresh:
            headers = self._blocks.get((data, raw))
            if headers is not None:
                return list(headers)
        # An error (RFC 7541 §4.3, an oversized list) leaves the cache as it was: nothing is kept.
        decoded = list(super().decode(data, raw))
        if fresh and self._state.matches(table):
            # The block only referred to the table (indexed fields, literals without indexing), and
            # passed the same limits: the same bytes decode to the same fields while the table stays.
            if len(self._blocks) >= MAX_CACHED:
                self._blocks.clear()
            self._blocks[(data, raw)] = decoded
            return list(decoded)
        self._state = _TableState(table)
        self._limits = limits
        self._blocks.clear()
        return decoded


__all__ = ["CachingDecoder", "CachingEncoder"]
