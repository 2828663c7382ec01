"""TFRecord files written and read natively, without TensorFlow, one concern per module:

- framing: the byte layout of a record and its masked CRC-32C (the format's definition);
- writer: one file (TFRecordWriter, write_tfrecord), plain or GZIP, with its DALI index;
- shards: `{split}-{i:05d}-of-{n:05d}.tfrecord` sets (ShardWriter wraps the one-file writer's
  PendingFile, as webdataset's ShardWriter wraps TarWriter), finding and assigning shards;
- reading: records of a plain or GZIP file, every length and CRC checked;
- index: the DALI index (`<file>.idx`), built, read and used for random access.

The names below are the package's interface; import them from here.
"""

from ml.formats.tfrecord.framing import (FOOTER_BYTES, FRAMING_BYTES, GZIP, HEADER_BYTES,
                                         INDEX_SUFFIX, Record, frame_header, frame_record,
                                         index_path_for, mask_crc, masked_crc32c,
                                         normalize_compression)
from ml.formats.tfrecord.index import (IndexedTFRecord, read_index, scan_index, write_index)
from ml.formats.tfrecord.reading import detect_compression, iter_record_spans, iter_records
from ml.formats.tfrecord.shards import (SHARD_SUFFIX, ShardSummary, ShardWriter, assign_shards,
                                        check_split_name, find_shards, shard_name,
                                        shuffled_order, write_shards)
from ml.formats.tfrecord.writer import TFRecordFileInfo, TFRecordWriter, write_tfrecord

__all__ = [
    "FOOTER_BYTES", "FRAMING_BYTES", "GZIP", "HEADER_BYTES", "INDEX_SUFFIX", "Record",
    "frame_header", "frame_record", "index_path_for", "mask_crc", "masked_crc32c",
    "normalize_compression", "IndexedTFRecord", "read_index", "scan_index", "write_index",
    "detect_compression", "iter_record_spans", "iter_records", "SHARD_SUFFIX", "ShardSummary",
    "ShardWriter", "assign_shards", "check_split_name", "find_shards", "shard_name",
    "shuffled_order", "write_shards", "TFRecordFileInfo", "TFRecordWriter", "write_tfrecord",
]
