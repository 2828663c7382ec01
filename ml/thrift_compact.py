"""Thrift's compact protocol, read and written losslessly: what a Parquet footer is made of.

A Parquet file's footer (FileMetaData) is one Thrift struct in the compact protocol. To build
a file out of another file's column chunks (ml/parquet_splice.py) we need to read that footer,
move a few offsets and write it back, keeping every field we do not touch exactly as it was,
including fields newer than this code (a size_statistics or geospatial block written by a
later Arrow). pyarrow exposes the footer read-only; fastparquet's codec drops the fields its
own copy of parquet.thrift does not know (a pyarrow 26 footer came back 710 bytes shorter).
So a struct is kept here as its fields by id, in their order, each with its wire type, and
written back field by field: nothing is interpreted unless asked for.

Wire format (Apache Thrift, doc/specs/thrift-compact-protocol.md): a struct is a run of field
headers (id delta and type in one byte, or the type then the id as a zigzag varint) ending in
a zero byte; integers are zigzag varints, binary is a varint length and the bytes, a list is
a size-and-type byte (size 15 = a varint size follows) and its elements.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

# compact protocol wire types
TRUE, FALSE, I8, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT, UUID = range(1, 14)


@dataclass
class Struct:
    """A decoded struct: `fields` maps a field id to (wire type, value), in wire order."""

    fields: dict[int, tuple[int, Any]] = field(default_factory=dict)

    def __getitem__(self, fid: int) -> Any:
        return self.fields[fid][1]

    def get(self, fid: int, default: Any = None) -> Any:
        return self.fields[fid][1] if fid in self.fields else default

    def __contains__(self, fid: int) -> bool:
        return fid in self.fields

    def set(self, fid: int, kind: int, value: Any) -> None:
        """Set a field (kept in place if present, added last otherwise)."""
        self.fields[fid] = (kind, value)


@dataclass
class List:
    """A decoded list or set: its element wire type and its elements."""

    kind: int
    items: list


class ThriftError(ValueError):
    """The bytes are not a well-formed compact-protocol struct."""


# ----------------------------------------------------------------------------- reading

class _Reader:
    def __init__(self, data: bytes | memoryview):
        self.data = memoryview(data)
        self.pos = 0

    def byte(self) -> int:
        try:
            b = self.data[self.pos]
        except IndexError:
            raise ThriftError(f"truncated at byte {self.pos}") from None
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise ThriftError(f"varint too long at byte {self.pos}")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def raw(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ThriftError(f"{n} bytes wanted at byte {self.pos} of {len(self.data)}")
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def value(self, kind: int) -> Any:
        if kind in (TRUE, FALSE):           # a boolean list element: one byte, 1 is true
            return self.byte() == TRUE
        if kind == I8:
            return struct.unpack("b", self.raw(1))[0]
        if kind in (I16, I32, I64):
            return self.zigzag()
        if kind == DOUBLE:
            return struct.unpack("<d", self.raw(8))[0]
        if kind == BINARY:
            return self.raw(self.varint())
        if kind == UUID:
            return self.raw(16)
        if kind in (LIST, SET):
            head = self.byte()
            size, element = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            return List(element, [self.value(element) for _ in range(size)])
        if kind == MAP:
            size = self.varint()
            if size == 0:
                return (0, 0, [])
            types = self.byte()
            k, v = types >> 4, types & 0x0F
            return (k, v, [(self.value(k), self.value(v)) for _ in range(size)])
        if kind == STRUCT:
            return self.struct()
        raise ThriftError(f"unknown wire type {kind} at byte {self.pos}")

    def struct(self) -> Struct:
        out, last = Struct(), 0
        while True:
            head = self.byte()
            if head == 0:
                return out
            kind, delta = head & 0x0F, head >> 4
            fid = last + delta if delta else self.zigzag()
            value = True if kind == TRUE else False if kind == FALSE else self.value(kind)
            out.fields[fid] = (kind, value)
            last = fid


def loads(data: bytes | memoryview) -> Struct:
    """The struct encoded in `data` (all of it)."""
    reader = _Reader(data)
    out = reader.struct()
    if reader.pos != len(reader.data):
        raise ThriftError(f"{len(reader.data) - reader.pos} bytes after the struct")
    return out


# ----------------------------------------------------------------------------- writing

def _varint(n: int, out: bytearray) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _zigzag(n: int, out: bytearray) -> None:
    _varint((n << 1) ^ (n >> 63), out)


def _value(kind: int, value: Any, out: bytearray) -> None:
    if kind in (TRUE, FALSE):
        out.append(TRUE if value else FALSE)
    elif kind == I8:
        out += struct.pack("b", value)
    elif kind in (I16, I32, I64):
        _zigzag(value, out)
    elif kind == DOUBLE:
        out += struct.pack("<d", value)
    elif kind == BINARY:
        _varint(len(value), out)
        out += value
    elif kind == UUID:
        out += value
    elif kind in (LIST, SET):
        size = len(value.items)
        out.append((min(size, 15) << 4) | value.kind)
        if size >= 15:
            _varint(size, out)
        for item in value.items:
            _value(value.kind, item, out)
    elif kind == MAP:
        k, v, pairs = value
        _varint(len(pairs), out)
        if pairs:
            out.append((k << 4) | v)
            for key, val in pairs:
                _value(k, key, out)
                _value(v, val, out)
    elif kind == STRUCT:
        _struct(value, out)
    else:
        raise ThriftError(f"unknown wire type {kind}")


def _struct(value: Struct, out: bytearray) -> None:
    last = 0
    for fid, (kind, item) in value.fields.items():
        if kind in (TRUE, FALSE):
            kind = TRUE if item else FALSE
        if 0 < fid - last <= 15:
            out.append(((fid - last) << 4) | kind)
        else:
            out.append(kind)
            _zigzag(fid, out)
        if kind not in (TRUE, FALSE):
            _value(kind, item, out)
        last = fid
    out.append(0)


def dumps(value: Struct) -> bytes:
    out = bytearray()
    _struct(value, out)
    return bytes(out)
