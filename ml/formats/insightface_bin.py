"""insightface validation `.bin` files, read without running pickle, and validation memfiles.

A `.bin` (lfw.bin, agedb_30.bin, cfp_fp.bin, ...) is one pickle of `(bins, issame_list)`:
`bins` is a list of encoded images (JPEG/PNG bytes), two per pair, `issame_list` one bool per
pair. Files come in three byte-level flavours, all read here:
- protocol 3-5 (Python 3): images as BINBYTES / SHORT_BINBYTES / BINBYTES8 opcodes;
- protocol 0-2 written by Python 3: each image as `_codecs.encode(<latin-1 str>, 'latin1')`,
  i.e. GLOBAL '_codecs encode' + a unicode string + REDUCE;
- Python 2 (insightface's originals): images as py2 `str` (STRING / BINSTRING /
  SHORT_BINSTRING), which Python 3 must load with `encoding='bytes'`; we return them as bytes.

We never hand the file to `pickle.load`. `pickle.Unpickler.find_class` would stop `os.system`,
but CPython's unpickler still allocates a BINBYTES8 object of whatever length the file claims
before reading it (a corrupt 8-byte length is a multi-GiB allocation), and it interprets every
other opcode. Instead `_RestrictedUnpickler` walks the opcodes with `pickletools.genops` over an
in-memory buffer (a read never returns more than the bytes that exist) and builds only bytes,
bytearray, str, list, tuple, bool, int and None. The one callable admitted is `_codecs.encode`
with a 'latin1' argument (protocol 0-2 bytes); any other GLOBAL / STACK_GLOBAL, and opcodes
that build objects (BUILD, INST, OBJ, NEWOBJ, EXT*, PERSID, dicts, sets, floats), raise
FormatError naming the file, the byte offset and the forbidden global. Nothing is executed.

`build_validation_memfile` turns such sets into seed 002's FiveValidationDataset memfiles.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

import numpy as np
from PIL import Image

from ml.atomic import atomic_open, atomic_path, atomic_write_text
from ml.errors import DatasetError, FormatError, SourceError
from ml.formats.memfile import MemfileInfo, MemfileWriter, open_memfile, write_memfile
from ml.imageio import load_rgb
from ml.progress import ProgressFactory, start_progress
from ml.safe_paths import contained, safe_component

ADMITTED_GLOBAL = ("_codecs", "encode")
LATIN1_NAMES = ("latin1", "latin-1")
# Whatever genops raises on a corrupt stream (short reads, unknown opcodes, bad text fields).
_GENOPS_ERRORS = (ValueError, EOFError, struct.error, OverflowError, IndexError, KeyError)


@dataclass(frozen=True)
class VerificationBin:
    """The content of one insightface `.bin`: 2 encoded images per pair and one bool per pair."""

    path: Path
    images: list[bytes]
    issame: list[bool]

    @property
    def n_pairs(self) -> int:
        return len(self.issame)


# ---------------------------------------------------------------------- restricted unpickling

class _CodecsEncode:
    """Stands for `_codecs.encode` on the stack; REDUCE applies it as bytes(str, 'latin1')."""


_MARKER_ENCODE = _CodecsEncode()


class _RestrictedUnpickler:
    """A pickle interpreter that admits only the opcodes an insightface `.bin` needs."""

    def __init__(self, path: Path, data: bytes):
        self.path = path
        self.data = data
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.pos = 0

    def fail(self, problem: str, offset: int | None = None) -> FormatError:
        return FormatError(self.path, self.pos if offset is None else offset, problem)

    def load(self) -> Any:
        stream = io.BytesIO(self.data)
        ops = pickletools.genops(stream)
        next_op = 0
        while True:
            try:   # genops raises ValueError, not StopIteration, when the bytes end early
                op, arg, pos = next(ops)
            except _GENOPS_ERRORS as exc:
                raise self.fail(f"corrupt pickle: {exc}", next_op) from None
            next_op = stream.tell()
            self.pos = pos
            if op.name == "STOP":
                return self.stop(len(self.data) - next_op, next_op)
            handler = getattr(self, "op_" + op.name, None)
            if handler is None:
                raise self.fail(f"pickle opcode {op.name} is not allowed in an insightface .bin "
                                "(only bytes, lists, tuples, bools and ints are)")
            handler(arg)

    def stop(self, trailing: int, end: int) -> Any:
        if self.marks or len(self.stack) != 1:
            raise self.fail(f"malformed pickle: STOP with {len(self.stack)} values and "
                            f"{len(self.marks)} open marks on the stack")
        if trailing:
            raise self.fail(f"{trailing} bytes of trailing data after the pickle", end)
        return self.stack[0]

    # stack helpers
    def push(self, value: Any) -> None:
        self.stack.append(value)

    def pop(self) -> Any:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise self.fail("malformed pickle: stack underflow")
        return self.stack.pop()

    def top(self) -> Any:
        value = self.pop()
        self.stack.append(value)
        return value

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise self.fail("malformed pickle: no MARK to pop to")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def target_list(self) -> list:
        target = self.top()
        if not isinstance(target, list):
            raise self.fail(f"malformed pickle: append to a {type(target).__name__}")
        return target

    # framing and constants
    def op_PROTO(self, arg: int) -> None:
        if not 0 <= arg <= pickle.HIGHEST_PROTOCOL:
            raise self.fail(f"unsupported pickle protocol {arg}")

    def op_FRAME(self, arg: int) -> None:
        pass

    def op_MARK(self, arg: None) -> None:
        self.marks.append(len(self.stack))

    def op_POP(self, arg: None) -> None:
        self.pop()

    def op_POP_MARK(self, arg: None) -> None:
        self.pop_mark()

    def op_DUP(self, arg: None) -> None:
        self.push(self.top())

    def op_NONE(self, arg: None) -> None:
        self.push(None)

    def op_NEWTRUE(self, arg: None) -> None:
        self.push(True)

    def op_NEWFALSE(self, arg: None) -> None:
        self.push(False)

    def push_arg(self, arg: Any) -> None:
        self.push(arg)

    op_INT = op_BININT = op_BININT1 = op_BININT2 = op_LONG = op_LONG1 = op_LONG4 = push_arg
    op_BINBYTES = op_SHORT_BINBYTES = op_BINBYTES8 = op_BYTEARRAY8 = push_arg
    op_UNICODE = op_SHORT_BINUNICODE = op_BINUNICODE = op_BINUNICODE8 = push_arg

    def push_py2_str(self, arg: str) -> None:
        # genops decodes py2 str opcodes as latin-1; encoding back gives the exact bytes,
        # which is what pickle.load(..., encoding='bytes') returns.
        self.push(arg.encode("latin-1"))

    op_STRING = op_BINSTRING = op_SHORT_BINSTRING = push_py2_str

    # containers
    def op_EMPTY_LIST(self, arg: None) -> None:
        self.push([])

    def op_LIST(self, arg: None) -> None:
        self.push(self.pop_mark())

    def op_APPEND(self, arg: None) -> None:
        value = self.pop()
        self.target_list().append(value)

    def op_APPENDS(self, arg: None) -> None:
        items = self.pop_mark()
        self.target_list().extend(items)

    def op_EMPTY_TUPLE(self, arg: None) -> None:
        self.push(())

    def op_TUPLE(self, arg: None) -> None:
        self.push(tuple(self.pop_mark()))

    def op_TUPLE1(self, arg: None) -> None:
        self.push((self.pop(),))

    def op_TUPLE2(self, arg: None) -> None:
        b, a = self.pop(), self.pop()
        self.push((a, b))

    def op_TUPLE3(self, arg: None) -> None:
        c, b, a = self.pop(), self.pop(), self.pop()
        self.push((a, b, c))

    # memo
    def memo_put(self, index: int) -> None:
        self.memo[index] = self.top()

    op_PUT = op_BINPUT = op_LONG_BINPUT = memo_put

    def op_MEMOIZE(self, arg: None) -> None:
        self.memo_put(len(self.memo))

    def memo_get(self, index: int) -> None:
        if index not in self.memo:
            raise self.fail(f"malformed pickle: memo entry {index} was never stored")
        self.push(self.memo[index])

    op_GET = op_BINGET = op_LONG_BINGET = memo_get

    # the one admitted callable
    def admit_global(self, module: object, name: object) -> None:
        if (module, name) != ADMITTED_GLOBAL:
            raise self.fail(f"forbidden global '{module}.{name}': an insightface .bin holds only "
                            "bytes, lists and bools, and loading this file with pickle would call "
                            f"{module}.{name}; it is refused and nothing was run")
        self.push(_MARKER_ENCODE)

    def op_GLOBAL(self, arg: str) -> None:
        module, _, name = arg.partition(" ")
        self.admit_global(module, name)

    def op_INST(self, arg: str) -> None:
        """Protocol 0's INST names its class inline ('module name'), like GLOBAL: refused with
        that name (no admitted global is ever instantiated)."""
        module, _, name = arg.partition(" ")
        raise self.fail(f"forbidden global '{module}.{name}' (opcode INST): an insightface .bin "
                        "holds only bytes, lists and bools, and loading this file with pickle "
                        f"would call {module}.{name}; it is refused and nothing was run")

    def op_STACK_GLOBAL(self, arg: None) -> None:
        name, module = self.pop(), self.pop()
        if not isinstance(module, str) or not isinstance(name, str):
            raise self.fail("malformed pickle: STACK_GLOBAL needs two strings")
        self.admit_global(module, name)

    def op_REDUCE(self, arg: None) -> None:
        args, func = self.pop(), self.pop()
        if func is not _MARKER_ENCODE:
            raise self.fail("malformed pickle: REDUCE of something that is not a callable")
        if not (isinstance(args, tuple) and len(args) == 2 and isinstance(args[0], str)
                and args[1] in LATIN1_NAMES):
            raise self.fail("_codecs.encode is admitted only as encode(<str>, 'latin1'), the "
                            "way pickle stores bytes in protocols 0-2")
        try:
            self.push(args[0].encode("latin-1"))
        except UnicodeEncodeError:
            raise self.fail("_codecs.encode argument holds characters beyond latin-1") from None


def _as_verification_bin(path: Path, obj: Any) -> VerificationBin:
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise FormatError(path, None, "expected a pickled (bins, issame_list) pair, found "
                          f"{type(obj).__name__}")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)) or not isinstance(issame, (list, tuple)):
        raise FormatError(path, None, "bins and issame_list must both be lists")
    for i, image in enumerate(bins):
        if not isinstance(image, (bytes, bytearray)):
            raise FormatError(path, None, f"bins[{i}] is a {type(image).__name__}, expected "
                              "encoded image bytes")
    for i, same in enumerate(issame):
        if not isinstance(same, int) or same not in (0, 1):
            raise FormatError(path, None, f"issame_list[{i}] is a {type(same).__name__} "
                              "that is not 0/1, expected a bool")
    if len(bins) != 2 * len(issame):
        raise FormatError(path, None, f"{len(bins)} images for {len(issame)} pairs; a .bin "
                          "holds exactly two images per pair")
    return VerificationBin(path, [bytes(b) for b in bins], [bool(s) for s in issame])


def load_insightface_bin(path: str | os.PathLike) -> VerificationBin:
    """Read an insightface validation `.bin` safely (see module doc); FormatError if corrupt."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(f"{path}: no such .bin file") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})") from None
    obj = _RestrictedUnpickler(path, data).load()
    return _as_verification_bin(path, obj)


def write_insightface_bin(path: str | os.PathLike, images: Sequence[bytes],
                          issame: Sequence[bool], protocol: int = 4) -> Path:
    """Write `(images, issame)` as an insightface `.bin` (pickle, protocol 4 by default)."""
    if len(images) != 2 * len(issame):
        raise DatasetError(f"{path}: {len(images)} images for {len(issame)} pairs; give two "
                           "images per pair")
    with atomic_open(path) as fh:
        pickle.dump(([bytes(b) for b in images], [bool(s) for s in issame]), fh,
                    protocol=protocol)
    return Path(path)


# ----------------------------------------------------------------------- validation memfiles

# Seed 002's FiveValidationDataset codes; further sets get 5, 6, ... in order of appearance.
DATANAME_CODES = {"agedb_30": 0, "cfp_fp": 1, "lfw": 2, "cplfw": 3, "calfw": 4}
NORMALIZATION = {
    "float32": "(x / 255 - 0.5) / 0.5 per RGB channel, in [-1, 1] (torchvision ToTensor + "
               "Normalize([0.5]*3, [0.5]*3), as insightface / AdaFace evaluation)",
    "uint8": "raw RGB 0..255 (normalise at read time)",
}

ImageItem = Union[bytes, bytearray, np.ndarray]
SetValue = Union[VerificationBin, str, os.PathLike, tuple[Sequence[ImageItem], Sequence[bool]]]
Decoder = Callable[[bytes, str], Image.Image]


@dataclass(frozen=True)
class ValidationSetInfo:
    """Where one named set lies in the concatenated memfile."""

    name: str
    code: int
    start: int
    images: int

    @property
    def pairs(self) -> int:
        return self.images // 2


@dataclass(frozen=True)
class ValidationMemfileSummary:
    """The files build_validation_memfile wrote, with counts, sizes and sha256s."""

    images: MemfileInfo
    issame: MemfileInfo
    dataname: MemfileInfo
    names_path: Path
    sets: list[ValidationSetInfo]
    image_size: int
    dtype: str
    normalization: str

    @property
    def n_images(self) -> int:
        return self.images.shape[0]

    @property
    def n_pairs(self) -> int:
        return self.n_images // 2

    @property
    def total_bytes(self) -> int:
        return self.images.nbytes + self.issame.nbytes + self.dataname.nbytes


@dataclass(frozen=True)
class ValidationMemfile:
    """An opened validation memfile: images (read-only memmap) and per-image labels."""

    images: np.ndarray
    issame: np.ndarray
    dataname: np.ndarray
    dataname_to_idx: dict[str, int]


def companion_paths(out_path: str | os.PathLike) -> dict[str, Path]:
    """The files of a validation memfile: images, issame, dataname and the names JSON."""
    out = Path(out_path)
    return {"images": out, "issame": out.with_name(out.name + ".issame"),
            "dataname": out.with_name(out.name + ".dataname"),
            "names": out.with_name(out.name + ".datanames.json")}


def issame_list_path(out_path: str | os.PathLike, set_name: str) -> Path:
    """AdaFace's `<name>_list.npy` beside the memfile: one bool per pair of that set, which its
    validation loader (`np.load(f"{path}/{name}_list.npy")`) reads next to the concatenated
    memfile."""
    out = Path(out_path)
    return contained(out.parent, f"{safe_component(set_name)}_list.npy",
                     what=f"issame list of validation set {set_name!r}")


def assign_dataname_codes(names: Sequence[str]) -> dict[str, int]:
    """Seed 002's code for known set names; 5, 6, ... for the others in order of appearance."""
    codes: dict[str, int] = {}
    next_code = max(DATANAME_CODES.values()) + 1
    for name in names:
        if name in DATANAME_CODES:
            codes[name] = DATANAME_CODES[name]
        else:
            codes[name] = next_code
            next_code += 1
    return codes


def _set_items(name: str, value: SetValue) -> tuple[Sequence[ImageItem], list[bool]]:
    if isinstance(value, (str, os.PathLike)):          # the path of an insightface .bin
        value = load_insightface_bin(value)
    if isinstance(value, VerificationBin):
        images, issame = value.images, value.issame
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        images, issame = value
    else:
        raise DatasetError(f"validation set {name!r}: expected a .bin path, a loaded .bin or an "
                           f"(images, issame) pair, got {type(value).__name__}")
    if len(images) != 2 * len(issame):
        raise DatasetError(f"validation set {name!r}: {len(images)} images for {len(issame)} "
                           "pairs; give two images per pair")
    return images, [bool(s) for s in issame]


def _to_rgb_image(item: ImageItem, label: str, decode: Decoder) -> Image.Image:
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3) or (item.ndim == 3
                                                                 and item.shape[2] != 3):
            raise DatasetError(f"{label}: arrays must be uint8 HxWx3 RGB or HxW gray, got "
                               f"{item.dtype} {item.shape}")
        return Image.fromarray(item).convert("RGB")
    return decode(bytes(item), label).convert("RGB")


def image_to_chw(img: Image.Image, image_size: int, dtype: np.dtype) -> np.ndarray:
    """Resize (bilinear) to image_size square if needed, then CHW in the memfile's dtype."""
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.BILINEAR)
    chw = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    if dtype == np.uint8:
        return chw
    return (chw.astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)


def _default_decode(data: bytes, label: str) -> Image.Image:
    return load_rgb(data, name=label)


def build_validation_memfile(out_path: str | os.PathLike, sets: Mapping[str, SetValue], *,
                             image_size: int = 112, dtype: str = "float32",
                             decode: Decoder | None = None, chunk_rows: int = 256,
                             emit: Callable[[str], None] | None = None,
                             progress_factory: ProgressFactory | None = None
                             ) -> ValidationMemfileSummary:
    """Write seed 002's validation memfiles for `sets` (name -> (images, issame), a loaded .bin
    or the path of one).

    Files (see companion_paths): `<out>` images N x 3 x S x S (float32 normalised as in
    NORMALIZATION, or uint8 raw RGB), `<out>.issame` bool per image (each pair's flag twice),
    `<out>.dataname` int64 per image (DATANAME_CODES), `<out>.datanames.json` the code mapping
    and each set's row range, and `<name>_list.npy` per set (one bool per pair, AdaFace's file).
    Images are decoded with PIL (RGB) one at a time and written in
    chunks of `chunk_rows`, so the decoded set never sits whole in memory.
    """
    if dtype not in NORMALIZATION:
        raise DatasetError(f"validation memfile dtype {dtype!r}: use one of {list(NORMALIZATION)}")
    np_dtype = np.dtype(dtype)
    decode = decode or _default_decode
    codes = assign_dataname_codes(list(sets))
    items = {name: _set_items(name, value) for name, value in sets.items()}
    n_images = sum(len(images) for images, _ in items.values())
    paths = companion_paths(out_path)

    infos, start = [], 0
    for name, (images, _) in items.items():
        infos.append(ValidationSetInfo(name, codes[name], start, len(images)))
        start += len(images)

    progress = start_progress(n_images, "validation images", emit, progress_factory)
    with MemfileWriter(paths["images"], (n_images, 3, image_size, image_size), np_dtype) as writer:
        for chunk in _chunks(_decoded_rows(items, image_size, np_dtype, decode), chunk_rows):
            writer.append(chunk)
            progress.advance(len(chunk))
        images_info = writer.commit()
    progress.finish()

    issame = np.array([s for _, flags in items.values() for s in flags for _ in (0, 1)], bool)
    dataname = np.concatenate([np.full(info.images, info.code, np.int64) for info in infos]
                              ) if infos else np.zeros(0, np.int64)
    summary = ValidationMemfileSummary(
        images=images_info, issame=write_memfile(paths["issame"], issame),
        dataname=write_memfile(paths["dataname"], dataname), names_path=paths["names"],
        sets=infos, image_size=image_size, dtype=dtype, normalization=NORMALIZATION[dtype])
    atomic_write_text(paths["names"], json.dumps(_names_document(summary), indent=1))
    for name, (_, flags) in items.items():
        with atomic_path(issame_list_path(out_path, name)) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.asarray(flags, dtype=bool))
    return summary


def _decoded_rows(items: Mapping[str, tuple[Sequence[ImageItem], list[bool]]], image_size: int,
                  dtype: np.dtype, decode: Decoder) -> Iterator[np.ndarray]:
    for name, (images, _) in items.items():
        for i, item in enumerate(images):
            img = _to_rgb_image(item, f"{name}[{i}]", decode)
            yield image_to_chw(img, image_size, dtype)


def _chunks(rows: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    block: list[np.ndarray] = []
    for row in rows:
        block.append(row)
        if len(block) == size:
            yield np.stack(block)
            block = []
    if block:
        yield np.stack(block)


def _names_document(summary: ValidationMemfileSummary) -> dict:
    return {
        "dataname_to_idx": {info.name: info.code for info in summary.sets},
        "sets": [{"name": i.name, "code": i.code, "start": i.start, "images": i.images,
                  "pairs": i.pairs} for i in summary.sets],
        "image_size": summary.image_size,
        "dtype": summary.dtype,
        "normalization": summary.normalization,
        "images_sha256": summary.images.sha256,
    }


def open_validation_memfile(out_path: str | os.PathLike) -> ValidationMemfile:
    """Open what build_validation_memfile wrote: images read-only, labels and the code map."""
    paths = companion_paths(out_path)
    try:
        names = json.loads(paths["names"].read_text(encoding="utf-8"))
        mapping = {str(k): int(v) for k, v in names["dataname_to_idx"].items()}
    except FileNotFoundError:
        raise FormatError(paths["names"], None, "missing; rebuild the validation memfile") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FormatError(paths["names"], None, f"not a datanames document ({exc})") from None
    images = open_memfile(paths["images"])
    issame = np.asarray(open_memfile(paths["issame"]))
    dataname = np.asarray(open_memfile(paths["dataname"]))
    if not len(images) == len(issame) == len(dataname):
        raise FormatError(paths["images"], None, f"{len(images)} images but {len(issame)} issame "
                          f"and {len(dataname)} dataname rows; rebuild the validation memfile")
    return ValidationMemfile(images, issame, dataname, mapping)
