"""tf.train.Example encoded and decoded by hand in the protobuf wire format, without TensorFlow.

The messages (tensorflow/core/example/{example,feature}.proto, proto3):

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                             Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed = true]; }
    Int64List { repeated int64 value = 1 [packed = true]; }

Wire bytes, as TensorFlow writes them: every message field is tag 0x0a/0x12/0x1a (field 1/2/3,
wire type 2), a varint length, then the body. A map entry is `0a <len> 0a <keylen> key 12 <len>
Feature`. Floats are packed little-endian float32, int64s packed varints (negative numbers as
10-byte two's complement). An empty list is a kind with an empty body (`1a 00`).

Map entry order: TensorFlow writes entries in its hash map's iteration order, which is neither key
order nor insertion order and is not specified. `encode_example` writes entries in the mapping's
own order, so re-encoding a decoded record reproduces TensorFlow's bytes exactly;
`make_image_example` writes keys sorted, which is what TensorFlow's
`SerializeToString(deterministic=True)` produces.

The decoder follows protobuf's parsing rules: unknown fields are skipped, packed and unpacked
repeated numbers are both accepted, a repeated submessage merges, and for a repeated map key the
last entry wins. Any malformed byte raises FormatError naming the source and byte offset.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np

from ml.errors import FormatError

BYTES_LIST = "bytes_list"
FLOAT_LIST = "float_list"
INT64_LIST = "int64_list"
KIND_FIELDS = {BYTES_LIST: 1, FLOAT_LIST: 2, INT64_LIST: 3}
FIELD_KINDS = {number: kind for kind, number in KIND_FIELDS.items()}

# Standard image keys (the TF object-detection / slim convention).
IMAGE_ENCODED = "image/encoded"
IMAGE_FORMAT = "image/format"
IMAGE_LABEL = "image/class/label"
IMAGE_TEXT = "image/class/text"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_FILENAME = "image/filename"
IMAGE_KEYS = (IMAGE_ENCODED, IMAGE_FORMAT, IMAGE_LABEL, IMAGE_TEXT, IMAGE_HEIGHT, IMAGE_WIDTH,
              IMAGE_FILENAME)

WIRE_VARINT, WIRE_FIXED64, WIRE_LEN, WIRE_FIXED32 = 0, 1, 2, 5
TAG_FIELD1 = b"\x0a"                 # field 1, length-delimited
TAG_FIELD2 = b"\x12"                 # field 2, length-delimited
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
UINT64 = 1 << 64
MAX_VARINT_BYTES = 10
DEFAULT_SOURCE = "<tf.train.Example>"


@dataclass(frozen=True)
class Feature:
    """One tf.train.Feature: its kind (bytes_list, float_list, int64_list; None when unset) and
    its values as a tuple of bytes, floats or ints."""

    kind: str | None
    values: tuple = ()

    @classmethod
    def bytes_list(cls, values: Sequence[bytes | str]) -> Feature:
        return cls(BYTES_LIST, tuple(_as_bytes(v) for v in values))

    @classmethod
    def float_list(cls, values: Sequence[float]) -> Feature:
        return cls(FLOAT_LIST, tuple(float(v) for v in values))

    @classmethod
    def int64_list(cls, values: Sequence[int]) -> Feature:
        return cls(INT64_LIST, tuple(int(v) for v in values))


FeatureLike = Union[Feature, bytes, str, int, float, Sequence[Any], np.ndarray]


@dataclass(frozen=True)
class ImageExample:
    """The standard image keys of one Example, plus every other feature in `extra`."""

    encoded: bytes
    format: str | None = None
    label: int | None = None
    text: str | None = None
    height: int | None = None
    width: int | None = None
    filename: str | None = None
    extra: dict[str, Feature] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ encoding

_ONE_BYTE_VARINTS = tuple(bytes((i,)) for i in range(0x80))


def encode_varint(value: int) -> bytes:
    """The protobuf base-128 varint of 0 <= value < 2**64."""
    if value < 0x80:
        return _ONE_BYTE_VARINTS[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview, np.bytes_)):
        return bytes(value)
    raise TypeError(f"a bytes_list value must be bytes or str, not {type(value).__name__}")


def to_feature(value: FeatureLike) -> Feature:
    """A Feature from a Python value: bytes/str -> bytes_list, int -> int64_list, float ->
    float_list, a sequence or numpy array of those -> the matching list."""
    if isinstance(value, Feature):
        return value
    if isinstance(value, (bytes, bytearray, memoryview, str, np.bytes_)):
        return Feature(BYTES_LIST, (_as_bytes(value),))
    if isinstance(value, (bool, int, np.integer)):
        return Feature(INT64_LIST, (int(value),))
    if isinstance(value, (float, np.floating)):
        return Feature(FLOAT_LIST, (float(value),))
    if isinstance(value, np.ndarray):
        return _array_feature(value)
    if isinstance(value, Sequence):
        return _sequence_feature(value)
    raise TypeError(f"cannot make a tf.train.Feature from {type(value).__name__}")


def _array_feature(array: np.ndarray) -> Feature:
    flat = array.ravel()
    if flat.dtype.kind == "f":
        return Feature(FLOAT_LIST, tuple(flat.astype(np.float64).tolist()))
    if flat.dtype.kind in "iub":
        return Feature(INT64_LIST, tuple(int(v) for v in flat.tolist()))
    if flat.dtype.kind in "SO":
        return Feature.bytes_list(flat.tolist())
    raise TypeError(f"cannot make a tf.train.Feature from an array of dtype {array.dtype}")


def _sequence_feature(values: Sequence[Any]) -> Feature:
    if len(values) == 0:
        raise TypeError("an empty list has no kind: pass Feature.bytes_list([]), "
                        "Feature.float_list([]) or Feature.int64_list([])")
    if all(isinstance(v, (bytes, bytearray, memoryview, str, np.bytes_)) for v in values):
        return Feature.bytes_list(values)
    if all(isinstance(v, (bool, int, np.integer)) for v in values):
        return Feature.int64_list(values)
    if all(isinstance(v, (bool, int, float, np.integer, np.floating)) for v in values):
        return Feature.float_list(values)
    raise TypeError("a feature list must hold only bytes/str, only ints, or only numbers")


def _list_body(feature: Feature) -> bytes:
    """The body of a BytesList / FloatList / Int64List message."""
    values = feature.values
    if not values:
        return b""
    if feature.kind == BYTES_LIST:
        return b"".join(TAG_FIELD1 + encode_varint(len(v)) + v for v in values)
    if feature.kind == FLOAT_LIST:
        packed = _pack_floats(values)
    elif feature.kind == INT64_LIST:
        packed = b"".join(encode_varint(_int64_wire(v)) for v in values)
    else:
        raise ValueError(f"unknown feature kind {feature.kind!r}")
    return TAG_FIELD1 + encode_varint(len(packed)) + packed


def _pack_floats(values: tuple) -> bytes:
    try:
        return struct.pack(f"<{len(values)}f", *values)
    except (OverflowError, struct.error) as exc:
        raise ValueError(f"float_list value out of float32 range ({exc})") from None


def _int64_wire(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"int64_list value {value} is outside the int64 range")
    return value % UINT64


def encode_feature(feature: FeatureLike) -> bytes:
    """The wire bytes of one tf.train.Feature message."""
    feature = to_feature(feature)
    if feature.kind is None:
        return b""
    body = _list_body(feature)
    return bytes([KIND_FIELDS[feature.kind] << 3 | WIRE_LEN]) + encode_varint(len(body)) + body


@functools.lru_cache(maxsize=4096)
def _entry_key_prefix(key: str) -> bytes:
    """`0a <keylen> key 12` of a map entry: precomputed once per key."""
    raw = key.encode("utf-8")
    return TAG_FIELD1 + encode_varint(len(raw)) + raw + TAG_FIELD2


@functools.lru_cache(maxsize=1 << 16)
def _bytes_entry_head(key: str, value_len: int) -> bytes:
    """Everything of a one-value bytes_list map entry before its value: it depends only on the
    key and the value's length, so it is cached (image sizes repeat across a dataset)."""
    prefix = _entry_key_prefix(key)
    value_varint = encode_varint(value_len)
    list_len = 1 + len(value_varint) + value_len
    head = TAG_FIELD1 + encode_varint(list_len) + TAG_FIELD1 + value_varint
    body_len = len(head) + value_len
    feature_len = encode_varint(body_len)
    entry_len = len(prefix) + len(feature_len) + body_len
    return TAG_FIELD1 + encode_varint(entry_len) + prefix + feature_len + head


def _bytes_entry_parts(key: str, value: bytes) -> list[bytes]:
    """The map entry of a one-value bytes_list feature as [framing, value]: the value (an image,
    say) is not copied."""
    return [_bytes_entry_head(key, len(value)), value]


def _entry_parts(key: str, feature: FeatureLike) -> list[bytes]:
    """The map entry of one feature as pieces; large bytes values are not copied."""
    feature = to_feature(feature)
    if feature.kind == BYTES_LIST and len(feature.values) == 1:
        return _bytes_entry_parts(key, feature.values[0])
    prefix = _entry_key_prefix(key)
    body = encode_feature(feature)
    feature_len = encode_varint(len(body))
    entry_len = len(prefix) + len(feature_len) + len(body)
    return [TAG_FIELD1 + encode_varint(entry_len) + prefix + feature_len, body]


@functools.lru_cache(maxsize=1 << 16, typed=True)
def _scalar_entry(key: str, value: int | str) -> bytes:
    """The whole map entry of a one-value feature, cached: labels, sizes, formats and class
    names repeat across a dataset."""
    return b"".join(_entry_parts(key, value))


def encode_example(features: Mapping[str, FeatureLike]) -> bytes:
    """A serialized tf.train.Example holding `features`, map entries in the mapping's order."""
    parts: list[bytes] = []
    for key, value in features.items():
        parts.extend(_entry_parts(key, value))
    return b"".join([TAG_FIELD1, encode_varint(sum(map(len, parts))), *parts])


@functools.lru_cache(maxsize=1 << 16, typed=True)
def _label_text_entries(label: int, text: str) -> bytes:
    """The entries sorted before image/encoded, cached per class."""
    return _scalar_entry(IMAGE_LABEL, label) + _scalar_entry(IMAGE_TEXT, text)


@functools.lru_cache(maxsize=1 << 16, typed=True)
def _format_size_entries(format: str, height: int, width: int) -> bytes:
    """The entries sorted after image/filename, cached per (format, size)."""
    return (_scalar_entry(IMAGE_FORMAT, format) + _scalar_entry(IMAGE_HEIGHT, height)
            + _scalar_entry(IMAGE_WIDTH, width))


def make_image_example_parts(encoded: bytes, *, label: int, height: int, width: int,
                             text: str = "", format: str = "jpeg", filename: str = "",
                             extra: Mapping[str, FeatureLike] | None = None) -> list[bytes]:
    """make_image_example as pieces whose concatenation is the Example: the image bytes are one
    of the pieces, uncopied (TFRecord writers take a record as pieces)."""
    if extra:
        return _image_example_parts_with_extra(encoded, label, height, width, text, format,
                                               filename, extra)
    name = filename.encode("utf-8") if type(filename) is str else _as_bytes(filename)
    head = _label_text_entries(int(label), text) + _bytes_entry_head(IMAGE_ENCODED, len(encoded))
    tail = (_bytes_entry_head(IMAGE_FILENAME, len(name)) + name
            + _format_size_entries(format, int(height), int(width)))
    size = len(head) + len(encoded) + len(tail)
    return [TAG_FIELD1 + encode_varint(size) + head, encoded, tail]


def _image_example_parts_with_extra(encoded: bytes, label: int, height: int, width: int,
                                    text: str, format: str, filename: str,
                                    extra: Mapping[str, FeatureLike]) -> list[bytes]:
    clash = set(extra) & set(IMAGE_KEYS)
    if clash:
        raise ValueError(f"extra features {sorted(clash)} repeat standard image keys")
    entries = [
        (IMAGE_LABEL, [_scalar_entry(IMAGE_LABEL, int(label))]),
        (IMAGE_TEXT, [_scalar_entry(IMAGE_TEXT, text)]),
        (IMAGE_ENCODED, _bytes_entry_parts(IMAGE_ENCODED, encoded)),
        (IMAGE_FILENAME, _bytes_entry_parts(IMAGE_FILENAME, _as_bytes(filename))),
        (IMAGE_FORMAT, [_scalar_entry(IMAGE_FORMAT, format)]),
        (IMAGE_HEIGHT, [_scalar_entry(IMAGE_HEIGHT, int(height))]),
        (IMAGE_WIDTH, [_scalar_entry(IMAGE_WIDTH, int(width))]),
    ]
    entries.extend((key, _entry_parts(key, value)) for key, value in extra.items())
    entries.sort(key=lambda entry: entry[0])
    parts = [part for _, entry in entries for part in entry]
    return [TAG_FIELD1 + encode_varint(sum(map(len, parts))), *parts]


def make_image_example(encoded: bytes, *, label: int, height: int, width: int, text: str = "",
                       format: str = "jpeg", filename: str = "",
                       extra: Mapping[str, FeatureLike] | None = None) -> bytes:
    """A serialized Example with the standard image keys (and `extra`), keys in sorted order.

    Byte-identical to encode_example of the same features sorted by key, but several times
    faster: repeated values (labels, sizes, format, class names) come from a cache.
    """
    return b"".join(make_image_example_parts(
        encoded, label=label, height=height, width=width, text=text, format=format,
        filename=filename, extra=extra))


# ------------------------------------------------------------------------------------ decoding

class _Reader:
    """Bounds-checked reads of protobuf wire data in buf[...], errors at source + offset."""

    def __init__(self, buf: bytes, source: str, base_offset: int):
        self.buf = buf
        self.source = source
        self.base = base_offset

    def fail(self, pos: int, problem: str) -> FormatError:
        return FormatError(self.source, self.base + pos,
                           f"malformed tf.train.Example: {problem}")

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        buf = self.buf
        result = shift = 0
        start = pos
        while True:
            if pos >= end:
                raise self.fail(start, "varint runs past the end of its message")
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result & (UINT64 - 1), pos
            shift += 7
            if pos - start >= MAX_VARINT_BYTES:
                raise self.fail(start, "varint longer than 10 bytes")

    def tag(self, pos: int, end: int) -> tuple[int, int, int]:
        key, after = self.varint(pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise self.fail(pos, "field number 0")
        return number, wire, after

    def length_delimited(self, pos: int, end: int) -> tuple[int, int]:
        """(start, stop) of a length-delimited body whose length varint is at pos."""
        length, start = self.varint(pos, end)
        if length > end - start:
            raise self.fail(pos, f"length {length} runs past the end of its message "
                                 f"({end - start} bytes left)")
        return start, start + length

    def skip(self, pos: int, end: int, wire: int, tag_pos: int) -> int:
        if wire == WIRE_VARINT:
            return self.varint(pos, end)[1]
        if wire == WIRE_LEN:
            return self.length_delimited(pos, end)[1]
        width = {WIRE_FIXED64: 8, WIRE_FIXED32: 4}.get(wire)
        if width is None:
            raise self.fail(tag_pos, f"unsupported wire type {wire}")
        if pos + width > end:
            raise self.fail(pos, "fixed-width field runs past the end of its message")
        return pos + width

    def each_field(self, pos: int, end: int,
                   handle: Callable[[int, int, int], int | None]) -> None:
        """Call `handle(number, wire, value_pos)` for every field in buf[pos:end]; it returns
        where the value it consumed ends, or None to have the field skipped as unknown."""
        while pos < end:
            number, wire, value_pos = self.tag(pos, end)
            after = handle(number, wire, value_pos)
            pos = after if after is not None else self.skip(value_pos, end, wire, pos)


def decode_example(data: bytes, source: str = DEFAULT_SOURCE,
                   base_offset: int = 0) -> dict[str, Feature]:
    """The features of a serialized tf.train.Example, in wire order.

    `source` and `base_offset` (where `data` starts in that file) make error messages point at
    the exact byte: FormatError(source, base_offset + position, problem).
    """
    data = bytes(data)
    reader = _Reader(data, str(source), base_offset)
    features: dict[str, Feature] = {}

    def on_example_field(number: int, wire: int, pos: int) -> int | None:
        if number != 1 or wire != WIRE_LEN:
            return None
        start, stop = reader.length_delimited(pos, len(data))
        _decode_features(reader, start, stop, features)
        return stop

    reader.each_field(0, len(data), on_example_field)
    return features


def _decode_features(reader: _Reader, pos: int, end: int, out: dict[str, Feature]) -> None:
    def on_entry(number: int, wire: int, value_pos: int) -> int | None:
        if number != 1 or wire != WIRE_LEN:
            return None
        start, stop = reader.length_delimited(value_pos, end)
        key, feature = _decode_entry(reader, start, stop)
        out.pop(key, None)          # last entry wins, and takes its place in wire order
        out[key] = feature
        return stop

    reader.each_field(pos, end, on_entry)


def _decode_entry(reader: _Reader, pos: int, end: int) -> tuple[str, Feature]:
    key = ""
    feature = Feature(None)

    def on_field(number: int, wire: int, value_pos: int) -> int | None:
        nonlocal key, feature
        if wire != WIRE_LEN or number not in (1, 2):
            return None
        start, stop = reader.length_delimited(value_pos, end)
        if number == 1:
            try:
                key = reader.buf[start:stop].decode("utf-8")
            except UnicodeDecodeError:
                raise reader.fail(start, "feature key is not UTF-8") from None
        else:
            feature = _decode_feature(reader, start, stop, feature)
        return stop

    reader.each_field(pos, end, on_field)
    return key, feature


def _decode_feature(reader: _Reader, pos: int, end: int, feature: Feature) -> Feature:
    """Merge the Feature message at buf[pos:end] into `feature` (protobuf merge semantics)."""

    def on_kind(number: int, wire: int, value_pos: int) -> int | None:
        nonlocal feature
        kind = FIELD_KINDS.get(number)
        if kind is None or wire != WIRE_LEN:
            return None
        start, stop = reader.length_delimited(value_pos, end)
        values = _decode_list(reader, start, stop, kind)
        previous = feature.values if feature.kind == kind else ()
        feature = Feature(kind, previous + values)
        return stop

    reader.each_field(pos, end, on_kind)
    return feature


def _decode_list(reader: _Reader, pos: int, end: int, kind: str) -> tuple:
    values: list = []
    buf = reader.buf

    def on_value(number: int, wire: int, value_pos: int) -> int | None:
        if number != 1:
            return None
        if kind == BYTES_LIST:
            if wire != WIRE_LEN:
                return None
            start, stop = reader.length_delimited(value_pos, end)
            values.append(buf[start:stop])
            return stop
        if kind == FLOAT_LIST:
            return _decode_floats(reader, value_pos, end, wire, values)
        return _decode_int64s(reader, value_pos, end, wire, values)

    reader.each_field(pos, end, on_value)
    return tuple(values)


def _decode_floats(reader: _Reader, pos: int, end: int, wire: int, out: list) -> int | None:
    if wire == WIRE_FIXED32:
        if pos + 4 > end:
            raise reader.fail(pos, "float runs past the end of its message")
        out.append(struct.unpack_from("<f", reader.buf, pos)[0])
        return pos + 4
    if wire != WIRE_LEN:
        return None
    start, stop = reader.length_delimited(pos, end)
    if (stop - start) % 4:
        raise reader.fail(pos, f"packed float_list of {stop - start} bytes is not a multiple "
                               "of 4")
    out.extend(struct.unpack_from(f"<{(stop - start) // 4}f", reader.buf, start))
    return stop


def _decode_int64s(reader: _Reader, pos: int, end: int, wire: int, out: list) -> int | None:
    if wire == WIRE_VARINT:
        value, after = reader.varint(pos, end)
        out.append(value - UINT64 if value > INT64_MAX else value)
        return after
    if wire != WIRE_LEN:
        return None
    start, stop = reader.length_delimited(pos, end)
    while start < stop:
        value, start = reader.varint(start, stop)
        out.append(value - UINT64 if value > INT64_MAX else value)
    return stop


# ------------------------------------------------------------------------------- image examples

def parse_image_example(data: bytes | Mapping[str, Feature], source: str = DEFAULT_SOURCE,
                        base_offset: int = 0) -> ImageExample:
    """The standard image keys of an Example (serialized or already decoded).

    `image/encoded` is required; the others are None when absent. A standard key of the wrong
    kind or with other than exactly one value raises FormatError.
    """
    features = data if isinstance(data, Mapping) else decode_example(data, source, base_offset)

    def single(key: str, kind: str) -> Any:
        feature = features.get(key)
        if feature is None:
            return None
        if feature.kind != kind or len(feature.values) != 1:
            raise FormatError(source, base_offset, f"feature {key!r} should hold one "
                              f"{kind} value, found {feature.kind} with "
                              f"{len(feature.values)} values")
        return feature.values[0]

    def text(key: str) -> str | None:
        raw = single(key, BYTES_LIST)
        if raw is None:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(source, base_offset, f"feature {key!r} is not UTF-8 text") from None

    encoded = single(IMAGE_ENCODED, BYTES_LIST)
    if encoded is None:
        raise FormatError(source, base_offset, f"no {IMAGE_ENCODED!r} feature: not an image "
                          f"Example (keys: {sorted(features)[:10]})")
    return ImageExample(
        encoded=encoded,
        format=text(IMAGE_FORMAT),
        label=single(IMAGE_LABEL, INT64_LIST),
        text=text(IMAGE_TEXT),
        height=single(IMAGE_HEIGHT, INT64_LIST),
        width=single(IMAGE_WIDTH, INT64_LIST),
        filename=text(IMAGE_FILENAME),
        extra={k: v for k, v in features.items() if k not in IMAGE_KEYS},
    )

