"""Write the golden reference files with the real tools that define each format.

`make golden` runs each part in a virtual environment of its own (`.golden-venvs/<env>`, built
from `tests/golden/requirements-<env>.txt`), never in the project's runtime:

    python tests/golden/make_golden.py recordio OUT   # env mxnet: mxnet 1.9.1 (OpenCV for
                                                       #   pack_img), insightface 2.1 RecBuilder
    python tests/golden/make_golden.py tfrecord OUT   # env tensorflow: TensorFlow 2.21
    python tests/golden/make_golden.py hdf5 OUT       # env h5py: h5py 3.16, Pillow 13
    python tests/golden/make_golden.py bin OUT        # env h5py: Python's pickle (+ the py2 and
                                                       #   hostile files, hand-made opcodes)
    python tests/golden/make_golden.py inat OUT       # env h5py: JSON and Pillow images
    python tests/golden/make_golden.py images OUT     # env h5py: Pillow 13 and hand-made bytes

Each part replaces its own folder under OUT and writes the folder's `expected.json` (what a
correct reader must find) from what the tool wrote, read back with the same tool. Images are
drawn deterministically, so a re-run writes the same content; the project's tests read the
result (tests/golden/, or IMAGEDS_GOLDEN=OUT). This file imports nothing from the project.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import sys
from pathlib import Path


def sha(data: bytes) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()


def fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def write_json(path: Path, doc) -> None:
    path.write_text(json.dumps(doc, indent=1) + "\n")


def picture(index: int, width: int = 112, height: int = 112, smooth: bool = False):
    """A deterministic RGB picture (numpy uint8 HxWx3): gradients, a disc and a band that move
    with `index`, so every image differs and compresses like a photo, not like noise. `smooth`
    leaves out the hard edges (for tests that compare a resized or re-encoded image with its
    source within a few grey levels)."""
    import numpy as np
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    if smooth:
        phase = 0.7 * index
        r = 128 + 90 * np.sin(x / width * 3.0 + phase)
        g = 128 + 90 * np.cos(y / height * 2.5 + phase / 2)
        b = 128 + 80 * np.sin((x + y) / (width + height) * 4.0 - phase)
        return np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8)
    cx, cy = width * (0.3 + 0.05 * (index % 7)), height * (0.4 + 0.04 * (index % 5))
    disc = ((x - cx) ** 2 + (y - cy) ** 2) < (min(width, height) * 0.22) ** 2
    r = (x / width * 200 + 30 * index) % 256
    g = (y / height * 180 + 50 * (index % 3)) % 256
    b = ((x + y) / (width + height) * 255 + 17 * index) % 256
    img = np.stack([r, g, b], axis=-1)
    img[disc] = [(90 + 23 * index) % 256, 200 - 9 * (index % 11), 60 + 7 * (index % 13)]
    band = (y > height * 0.7) & (y < height * 0.78)
    img[band] = [240, 240, 230]
    return img.astype(np.uint8)


# ------------------------------------------------------------------------------ mxnet / insightface

def part_recordio(out: Path) -> None:
    import cv2
    import mxnet as mx
    import numpy as np

    folder = fresh(out / "recordio")
    expected: dict = {}

    def bgr(i):
        return cv2.cvtColor(picture(i), cv2.COLOR_RGB2BGR)

    def read_back(idx, rec, keys):
        reader = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "r")
        rows = []
        for key in keys:
            header, payload = mx.recordio.unpack(reader.read_idx(key))
            label = header.label.tolist() if isinstance(header.label, np.ndarray) else float(header.label)
            rows.append({"key": key, "flag": int(header.flag), "label": label, "id": int(header.id),
                         "id2": int(header.id2), "payload_sha256": sha(payload),
                         "payload_len": len(payload)})
        reader.close()
        return rows

    # plain: scalar labels, keys 0..7, JPEG payloads through pack_img (OpenCV)
    writer = mx.recordio.MXIndexedRecordIO(str(folder / "plain.idx"), str(folder / "plain.rec"), "w")
    for key in range(8):
        header = mx.recordio.IRHeader(0, float(key % 3), key, 0)
        writer.write_idx(key, mx.recordio.pack_img(header, bgr(key), quality=90, img_fmt=".jpg"))
    writer.close()
    expected["plain"] = read_back(folder / "plain.idx", folder / "plain.rec", list(range(8)))

    # array labels: flag = label length, non-contiguous keys, the last payload a PNG
    writer = mx.recordio.MXIndexedRecordIO(str(folder / "array_labels.idx"),
                                           str(folder / "array_labels.rec"), "w")
    labels = [[0.0], [1.0, 0.5], [2.0, 1.0, -1.25], [3.0], [4.0, 2.0]]
    for i, label in enumerate(labels):
        header = mx.recordio.IRHeader(0, np.array(label, np.float32), 100 + i, 7)
        fmt = ".png" if i == len(labels) - 1 else ".jpg"
        image = bgr(20 + i) if fmt == ".jpg" else cv2.cvtColor(
            np.full((112, 112, 3), 40 * i, np.uint8), cv2.COLOR_RGB2BGR)
        writer.write_idx(10 * i, mx.recordio.pack_img(header, image, quality=85, img_fmt=fmt))
    writer.close()
    expected["array_labels"] = read_back(folder / "array_labels.idx", folder / "array_labels.rec",
                                         [10 * i for i in range(len(labels))])

    # payloads holding the magic word at 4-byte-aligned offsets: mxnet splits them (cflag 1/2/3)
    magic = struct.pack("<I", 0xCED7230A)
    payloads = [b"abcd" + magic + b"efgh" + magic + b"ij", magic + b"xxxxxxx", b"no magic here!!"]
    writer = mx.recordio.MXIndexedRecordIO(str(folder / "magic_split.idx"),
                                           str(folder / "magic_split.rec"), "w")
    for key, payload in enumerate(payloads):
        writer.write_idx(key, mx.recordio.pack(mx.recordio.IRHeader(0, float(key), key, 0), payload))
    writer.close()
    expected["magic_split"] = [{k: r[k] for k in ("key", "label", "payload_sha256", "payload_len")}
                               for r in read_back(folder / "magic_split.idx",
                                                  folder / "magic_split.rec", [0, 1, 2])]

    # sequential: no .idx, payload lengths 1, 14, 27, 40 (unaligned: padding is exercised)
    rng = np.random.RandomState(7)
    writer = mx.recordio.MXRecordIO(str(folder / "sequential.rec"), "w")
    for i in range(4):
        payload = rng.randint(0, 256, 1 + 13 * i).astype(np.uint8).tobytes()
        writer.write(mx.recordio.pack(mx.recordio.IRHeader(0, float(i), i, 0), payload))
    writer.close()
    reader, rows = mx.recordio.MXRecordIO(str(folder / "sequential.rec"), "r"), []
    while (item := reader.read()) is not None:
        header, payload = mx.recordio.unpack(item)
        rows.append({"index": len(rows), "label": float(header.label),
                     "payload_sha256": sha(payload), "payload_len": len(payload)})
    expected["sequential"] = rows

    # insightface's legacy layout (faces_emore): record 0 = [N+1, N+1+ids], images 1..N,
    # identity records [start, end), property "ids,h,w"
    legacy = fresh(folder / "insightface_legacy")
    sizes = [3, 1, 4, 2]
    n = sum(sizes)
    writer = mx.recordio.MXIndexedRecordIO(str(legacy / "train.idx"), str(legacy / "train.rec"), "w")
    writer.write_idx(0, mx.recordio.pack(
        mx.recordio.IRHeader(2, np.array([n + 1, n + 1 + len(sizes)], np.float32), 0, 0), b""))
    key, ranges = 1, []
    for identity, count in enumerate(sizes):
        start = key
        for _ in range(count):
            writer.write_idx(key, mx.recordio.pack_img(mx.recordio.IRHeader(0, float(identity), key, 0),
                                                       bgr(40 + key), quality=95, img_fmt=".jpg"))
            key += 1
        ranges.append([start, key])
    for identity, (start, end) in enumerate(ranges):
        writer.write_idx(n + 1 + identity, mx.recordio.pack(
            mx.recordio.IRHeader(2, np.array([start, end], np.float32), 0, 0), b""))
    writer.close()
    (legacy / "property").write_text(f"{len(sizes)},112,112\n")
    images = read_back(legacy / "train.idx", legacy / "train.rec", list(range(1, n + 1)))
    expected["insightface_legacy"] = {
        "num_images": n, "num_identities": len(sizes), "identity_ranges": ranges,
        "images": [{"key": r["key"], "label": r["label"], "payload_sha256": r["payload_sha256"]}
                   for r in images]}
    write_json(folder / "expected.json", expected)

    # insightface's RecBuilder, loaded from its installed file (the package's __init__ wants
    # onnxruntime, which the RecBuilder does not use)
    import importlib.util
    import site
    candidates = [Path(p) / "insightface" / "data" / "rec_builder.py"
                  for p in site.getsitepackages()]
    spec = importlib.util.spec_from_file_location("rec_builder",
                                                  next(p for p in candidates if p.exists()))
    rec_builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rec_builder)
    target = folder / "insightface_recbuilder"
    builder = rec_builder.RecBuilder(str(target), image_size=(112, 112))
    per_identity = [2, 3, 4]
    for identity, count in enumerate(per_identity):
        builder.add([bgr(80 + 10 * identity + j) for j in range(count)])
    builder.close()
    write_json(target / "expected.json", {
        "images_per_identity": per_identity, "num_images": sum(per_identity),
        "note": "train.meta is a pickle written by RecBuilder; a reader should not need it"})


# ------------------------------------------------------------------------------ tensorflow

def part_tfrecord(out: Path) -> None:
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    folder = fresh(out / "tfrecord")
    bbox = [0.1, 0.2, 0.5, 0.75]
    expected: dict = {}

    def jpeg(i: int) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(picture(60 + i, 64, 48)).save(buf, "JPEG", quality=90)
        return buf.getvalue()

    def example(i: int) -> tf.train.Example:
        feature = {
            "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg(i)])),
            "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"jpeg"])),
            "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 5])),
            "image/class/text": tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[f"class_{i % 5}".encode()])),
            "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[f"Plantae/x/{i:04d}.jpg".encode()])),
            "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[48])),
            "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[64])),
            "image/bbox": tf.train.Feature(float_list=tf.train.FloatList(value=bbox)),
        }
        return tf.train.Example(features=tf.train.Features(feature=feature))

    for name, options in (("examples.tfrecord", None), ("examples_gzip.tfrecord.gz", "GZIP")):
        with tf.io.TFRecordWriter(str(folder / name), options=options) as writer:
            for i in range(7):
                writer.write(example(i).SerializeToString())
        rows = []
        for raw in tf.data.TFRecordDataset(str(folder / name), compression_type=options or ""):
            parsed = tf.train.Example.FromString(raw.numpy()).features.feature
            rows.append({"label": int(parsed["image/class/label"].int64_list.value[0]),
                         "text": parsed["image/class/text"].bytes_list.value[0].decode(),
                         "filename": parsed["image/filename"].bytes_list.value[0].decode(),
                         "height": int(parsed["image/height"].int64_list.value[0]),
                         "width": int(parsed["image/width"].int64_list.value[0]),
                         "bbox": [round(float(v), 6) for v in parsed["image/bbox"].float_list.value],
                         "encoded_sha256": sha(parsed["image/encoded"].bytes_list.value[0])})
        expected[name] = rows

    payloads = [b"", b"hello", np.arange(768, dtype=np.uint32).astype(np.uint8).tobytes()]
    with tf.io.TFRecordWriter(str(folder / "raw_payloads.tfrecord")) as writer:
        for payload in payloads:
            writer.write(payload)
    expected["raw_payloads.tfrecord"] = [
        {"payload_sha256": sha(raw.numpy()), "len": len(raw.numpy())}
        for raw in tf.data.TFRecordDataset(str(folder / "raw_payloads.tfrecord"))]
    write_json(folder / "expected.json", expected)


# ------------------------------------------------------------------------------ h5py

def jpeg_bytes(index: int, width: int, height: int, quality: int = 90) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(picture(index, width, height, smooth=True)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def part_hdf5(out: Path) -> None:
    import h5py
    import numpy as np

    folder = fresh(out / "hdf5")
    # seed 000's hybrid: labels in HDF5 beside an images folder; 2 missing, 1 truncated, NaN ages
    ids = [f"{1000 + i}_0" for i in range(20)]
    missing, corrupt = ["1003_0", "1011_0"], ["1007_0"]
    images = fresh(folder / "hybrid_images")
    for i, image_id in enumerate(ids):
        if image_id in missing:
            continue
        data = jpeg_bytes(100 + i, 96, 80)
        (images / f"{image_id}.jpg").write_bytes(data[: len(data) // 2] if image_id in corrupt else data)
    age = np.array([np.nan if i % 5 == 0 else 20.0 + i for i in range(20)], np.float32)
    with h5py.File(folder / "hybrid_labels.h5", "w") as h5:
        h5.create_dataset("image_ids", data=np.array([i.encode() for i in ids], dtype=object),
                          dtype=h5py.string_dtype("ascii"))
        h5.create_dataset("labels/age", data=age)
        h5.create_dataset("labels/gender", data=np.arange(20, dtype=np.int64) % 2)

    # seed 001's store in the solo-learn layout: /<class>/<object>_<frame>.jpg, uint8 bytes
    sequences = {}
    with h5py.File(folder / "sequences.h5", "w") as h5:
        for c, cls in enumerate(("bottle", "chair")):
            for obj in range(2):
                frames = []
                for frame in range(5):
                    data = jpeg_bytes(200 + 20 * c + 7 * obj + frame, 64, 64)
                    name = f"{cls}/obj{obj}_{frame:03d}.jpg"
                    h5.create_dataset(name, data=np.frombuffer(data, np.uint8))
                    frames.append({"name": name})
                sequences[f"{cls}/obj{obj}"] = frames
    with h5py.File(folder / "sequences.h5", "r") as h5:          # read back with h5py
        for frames in sequences.values():
            for f in frames:
                f["sha256"] = sha(h5[f["name"]][()].tobytes())
    write_json(folder / "expected.json", {
        "hybrid_labels.h5": {"image_ids": ids, "missing": missing, "corrupt": corrupt,
                             "null_age": [ids[i] for i in range(20) if np.isnan(age[i])],
                             "images_dir": "hybrid_images", "extension": ".jpg"},
        "sequences.h5": {"layout": "/<class>/<object>_<frame>.jpg holds encoded JPEG bytes as uint8",
                         "sequences": sequences}})


# ------------------------------------------------------------------------------ pickle (.bin)

def py2_pickle(images: list[bytes], issame: list[bool]) -> bytes:
    """(bins, issame) as Python 2's pickle protocol 2 writes it: each image a py2 `str`
    (BINSTRING), which Python 3 loads only with encoding='bytes'. Python 3 cannot write a py2
    str, so the opcodes are put down by hand, as cPickle would."""
    out = bytearray(b"\x80\x02]q\x00(")
    for data in images:
        out += b"T" + struct.pack("<I", len(data)) + data
    out += b"e]q\x01(" + b"".join(b"\x88" if s else b"\x89" for s in issame) + b"e\x86q\x02."
    return bytes(out)


def part_bin(out: Path) -> None:
    import pickle

    folder = fresh(out / "bin")
    images = [jpeg_bytes(300 + i, 112, 112) for i in range(12)]
    issame = [True, False] * 3
    (folder / "pairs_protocol4.bin").write_bytes(pickle.dumps((images, issame), protocol=4))
    (folder / "pairs_protocol2.bin").write_bytes(pickle.dumps((images, issame), protocol=2))
    (folder / "pairs_py2.bin").write_bytes(py2_pickle(images, issame))

    class Hostile:
        def __reduce__(self):
            return (os.system, ("touch PWNED_BY_PICKLE",))

    (folder / "hostile.bin").write_bytes(pickle.dumps(([Hostile()], [True]), protocol=4))
    for name in ("pairs_protocol4.bin", "pairs_protocol2.bin"):       # read back with pickle
        assert pickle.loads((folder / name).read_bytes()) == (images, issame)
    assert pickle.loads((folder / "pairs_py2.bin").read_bytes(), encoding="bytes") == (images, issame)
    write_json(folder / "expected.json", {
        "pairs": len(issame), "issame": issame, "image_sha256": [sha(i) for i in images],
        "files": {"pairs_protocol4.bin": "pickle protocol 4",
                  "pairs_protocol2.bin": "pickle protocol 2 (bytes via _codecs.encode)",
                  "pairs_py2.bin": "Python 2 style byte strings; needs encoding='bytes'",
                  "hostile.bin": "calls os.system when unpickled: must be refused, nothing may run"}})


# ------------------------------------------------------------------------------ iNaturalist

def part_inat(out: Path) -> None:
    folder = fresh(out / "inat")
    categories = [{"id": 0, "name": "Yucca schidigera", "supercategory": "Plantae"},
                  {"id": 1, "name": "Corvus corax", "supercategory": "Aves"}]
    doc: dict = {"info": {"year": 2017}, "images": [], "annotations": [], "categories": categories}
    missing, corrupt = [], []
    for i in range(5):
        cat = categories[0 if i < 2 else 1]
        name = f"train_val_images/{cat['supercategory']}/{cat['name']}/{i:032d}.jpg"
        width = 800 - 100 * i
        doc["images"].append({"id": 100 + i, "file_name": name, "width": width, "height": 600,
                              "license": 1, "rights_holder": "x"})
        doc["annotations"].append({"id": 100 + i, "image_id": 100 + i, "category_id": cat["id"]})
        if i == 3:
            missing.append(name)
            continue
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = jpeg_bytes(400 + i, width, 600)
        if i == 4:
            corrupt.append(name)
            data = data[: len(data) // 2]
        path.write_bytes(data)
    (folder / "train2017.json").write_text(json.dumps(doc))
    write_json(folder / "expected.json", {"missing": missing, "corrupt": corrupt})


# ------------------------------------------------------------------------------ awkward images

def part_images(out: Path) -> None:
    import numpy as np
    from PIL import Image

    folder = fresh(out / "images")
    base = Image.fromarray(picture(500, 120, 90, smooth=True))
    notes = {}

    def save(name, note, image=None, data=None, **params):
        if data is None:
            buf = io.BytesIO()
            image.save(buf, **params)
            data = buf.getvalue()
        (folder / name).write_bytes(data)
        notes[name] = note

    save("ok.jpg", "plain RGB JPEG 120x90", base, format="JPEG", quality=90)
    ok = (folder / "ok.jpg").read_bytes()
    save("truncated.jpg", "cut in half: Image.open and verify() pass, load() fails",
         data=ok[: len(ok) // 2])
    save("zero_bytes.jpg", "empty file", data=b"")
    save("not_an_image.jpg", "text with an image extension", data=b"this is not an image\n")
    save("jpeg_named.png", "JPEG bytes behind a .png name", data=ok)
    save("progressive.jpg", "progressive JPEG", base, format="JPEG", quality=85, progressive=True)
    save("grayscale.jpg", "mode L", base.convert("L"), format="JPEG")
    save("cmyk.jpg", "CMYK JPEG (often stored inverted by Adobe tools)", base.convert("CMYK"),
         format="JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6
    save("exif_rotate90.jpg", "stored 120x90 with EXIF orientation 6: shown upright it is 90x120",
         base, format="JPEG", exif=exif.tobytes())
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    save("rgba.png", "RGBA PNG", rgba, format="PNG")
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    save("palette_transparency.png", "palette PNG with a transparent index", palette,
         format="PNG", transparency=0)
    ramp = np.linspace(0, 65535, 120 * 90).reshape(90, 120).astype(np.uint16)
    save("gray16.png", "16-bit grayscale PNG spanning 0..65535: naive convert('L') clips",
         Image.fromarray(ramp), format="PNG")
    save("photo.webp", "WebP", base, format="WEBP", quality=80)
    frames = [Image.fromarray(picture(510 + k, 60, 45, smooth=True)) for k in range(3)]
    frames[0] = Image.fromarray(np.asarray(frames[0]) * np.array([1, 1, 0], np.uint8))  # no blue
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    save("animated.gif", "3-frame GIF", data=buf.getvalue())
    save("bomb_30000x30000.png", "claims 900 megapixels: must be refused before decoding",
         data=_png_claiming(30000, 30000))
    save("garbled_middle.jpg", "200 bytes overwritten mid-scan: often still decodes; only a "
         "recorded checksum catches it", data=_garbled_but_decodable())
    write_json(folder / "README.json", notes)


def _garbled_but_decodable() -> bytes:
    """A JPEG with 200 bytes mid-scan overwritten that still decodes, and still decodes after
    the tests garble it once more (50 bytes XOR 0x55 a quarter in): whether a damaged scan
    decodes depends on the picture, so the first picture for which both hold is taken."""
    from PIL import Image

    def decodes(data: bytes) -> bool:
        try:
            Image.open(io.BytesIO(data)).load()
            return True
        except (OSError, ValueError):
            return False

    for index in range(600, 800):
        buf = io.BytesIO()
        Image.fromarray(picture(index, 120, 90, smooth=True)).save(buf, "JPEG", quality=90)
        data = bytearray(buf.getvalue())
        start = len(data) // 2
        data[start:start + 200] = bytes((b * 7 + 3) % 255 for b in range(200))   # no 0xFF
        again = bytearray(data)
        quarter = len(again) // 4
        again[quarter:quarter + 50] = bytes(b ^ 0x55 for b in again[quarter:quarter + 50])
        if decodes(bytes(data)) and decodes(bytes(again)):
            return bytes(data)
    raise RuntimeError("no picture whose garbled scan still decodes")


def _png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header for width x height gray pixels and one tiny compressed row: decoders
    that trust the header allocate 900 MB."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + chunk(b"IEND", b""))


PARTS = {"recordio": part_recordio, "tfrecord": part_tfrecord, "hdf5": part_hdf5,
         "bin": part_bin, "inat": part_inat, "images": part_images}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in PARTS:
        sys.exit(f"usage: make_golden.py {{{'|'.join(PARTS)}}} OUT")
    PARTS[sys.argv[1]](Path(sys.argv[2]))
