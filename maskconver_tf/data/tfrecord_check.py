"""Fast pre-flight check of TFRecord files, naming the bad file and record.

A truncated or corrupt TFRecord otherwise surfaces mid-training as
`DataLossError: corrupted record at 123456 [Op:IteratorGetNext]`, deep in
the input graph and without the file name. `check_data_config` runs before
the tf.data pipeline is built (the task's `build_inputs`) and raises
`CorruptRecordError` with a one-line message:

    /data/train-00003-of-00064.tfrecord: record 17 at byte 2342931: length
    CRC mismatch (stored 0x1b2c..., computed 0x...)

What is checked (`MASKCONVER_TFRECORD_CHECK` environment variable):
- 'framing' (default): every record's 12-byte header (length + masked
  CRC32C of the length) and that the record ends inside the file. It reads
  16 bytes per record (seek + read), so even COCO's 118k records take about
  a second on a local disk. The data CRC is verified only for the first
  `DEFAULT_CRC_RECORDS` records of each file (TF's C++ reader), because
  verifying every payload means reading the whole data set at start-up.
  Remote files (`gs://...`) get the header walk only for those first
  records: a per-record remote seek would be too slow.
- 'full': the data CRC of every record too (reads everything once).
- 'off': no check.

`python -m maskconver_tf.data.tfrecord_check [--full] PATTERN...` runs the
check by hand; the train CLI runs the 'full' check itself after a
`DataLossError`, to name the file.
"""

import argparse
import os
import struct
import sys
from typing import Dict, Optional, Sequence, Union

ENV_VAR = 'MASKCONVER_TFRECORD_CHECK'
MODES = ('framing', 'full', 'off')
DEFAULT_CRC_RECORDS = 4
_HEADER = 12  # uint64 length + uint32 masked crc32c(length)
_FOOTER = 4  # uint32 masked crc32c(data)
_MASK_DELTA = 0xa282ead8


class CorruptRecordError(ValueError):
    """A TFRecord file is truncated or corrupt; names file, record, offset."""

    def __init__(self, path, index, offset, reason):
        self.path, self.index, self.offset, self.reason = (
            path, index, offset, reason)
        super().__init__(f'{path}: record {index} at byte {offset}: {reason} '
                         '(corrupt or truncated TFRecord file; regenerate it)')


def _crc32c_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82f63b78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli); pure Python, used on 8-byte headers only."""
    crc = 0xffffffff
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xff] ^ (crc >> 8)
    return crc ^ 0xffffffff


def masked_crc32c(data: bytes) -> int:
    """The masked CRC TFRecord stores (see tensorflow/core/lib/hash/crc32c.h)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xffffffff


def _is_remote(path: str) -> bool:
    return '://' in path


def _open(path):
    if _is_remote(path):
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        return tf.io.gfile.GFile(path, 'rb'), tf.io.gfile.stat(path).length
    return open(path, 'rb'), os.path.getsize(path)


def _walk_headers(path: str, max_records: Optional[int]):
    """Checks record framing; returns the list of record start offsets."""
    f, size = _open(path)
    offsets = []
    offset = 0
    with f:
        while offset < size and (max_records is None
                                 or len(offsets) < max_records):
            index = len(offsets)
            f.seek(offset)
            header = f.read(_HEADER)
            if len(header) < _HEADER:
                raise CorruptRecordError(
                    path, index, offset,
                    f'truncated header ({len(header)} of {_HEADER} bytes)')
            length_bytes, stored = header[:8], struct.unpack('<I', header[8:])[0]
            computed = masked_crc32c(length_bytes)
            if stored != computed:
                raise CorruptRecordError(
                    path, index, offset,
                    f'length CRC mismatch (stored {stored:#010x}, computed '
                    f'{computed:#010x})')
            length = struct.unpack('<Q', length_bytes)[0]
            end = offset + _HEADER + length + _FOOTER
            if end > size:
                raise CorruptRecordError(
                    path, index, offset,
                    f'truncated: the record needs {end - offset} bytes, the '
                    f'file has {size - offset} left')
            offsets.append(offset)
            offset = end
    return offsets


def _check_data_crcs(path: str, offsets: Sequence[int],
                     num_records: Optional[int]):
    """Verifies payload CRCs of the first `num_records` (None = all)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    dataset = tf.data.TFRecordDataset(path)
    if num_records is not None:
        dataset = dataset.take(num_records)
    count = 0
    try:
        for _ in dataset:
            count += 1
    except tf.errors.DataLossError as e:
        offset = offsets[count] if count < len(offsets) else -1
        reason = str(e).splitlines()[0] if str(e) else 'data loss'
        raise CorruptRecordError(path, count, offset,
                                 f'data CRC check failed ({reason})') from None


def check_file(path: str, mode: str = 'framing',
               crc_records: int = DEFAULT_CRC_RECORDS) -> int:
    """Checks one TFRecord file; returns the number of records walked.

    Args:
      path: a TFRecord file (local or any tf.io.gfile path).
      mode: 'framing' or 'full' (see the module docstring).
      crc_records: payload CRCs verified per file in 'framing' mode.

    Raises:
      FileNotFoundError: `path` does not exist.
      CorruptRecordError: bad framing, truncation or payload CRC.
    """
    if mode not in ('framing', 'full'):
        raise ValueError(f'mode {mode!r}: expected framing or full')
    if _is_remote(path):
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        exists = tf.io.gfile.exists(path)
    else:
        exists = os.path.isfile(path)
    if not exists:
        raise FileNotFoundError(f'{path}: no such TFRecord file')
    header_limit = crc_records if (_is_remote(path) and mode != 'full') else None
    offsets = _walk_headers(path, header_limit)
    _check_data_crcs(path, offsets, None if mode == 'full' else crc_records)
    return len(offsets)


def check_files(input_path: Union[str, Sequence[str]],
                mode: Optional[str] = None,
                crc_records: int = DEFAULT_CRC_RECORDS) -> Dict[str, int]:
    """Checks every file an `input_path` (Model Garden syntax) names.

    Args:
      input_path: a path / glob, comma-separated paths / globs, or a list of
        them (`official.core.input_reader.match_files` syntax).
      mode: 'framing', 'full' or 'off'; None = `$MASKCONVER_TFRECORD_CHECK`
        or 'framing'.
      crc_records: payload CRCs verified per file in 'framing' mode.

    Returns:
      {file: number of records walked} ({} when mode is 'off').
    """
    mode = mode or os.environ.get(ENV_VAR, 'framing') or 'framing'
    if mode not in MODES:
        raise ValueError(f'{ENV_VAR}={mode!r}: expected one of {MODES}')
    if mode == 'off':
        return {}
    from official.core import input_reader  # pylint: disable=g-import-not-at-top
    return {f: check_file(f, mode, crc_records)
            for f in input_reader.match_files(input_path)}


def check_data_config(params, mode: Optional[str] = None) -> Dict[str, int]:
    """Checks the TFRecords of a task DataConfig; a no-op for TFDS inputs.

    `mode` as in `check_files` (None = the environment variable's).
    """
    decoder_type = getattr(getattr(params, 'decoder', None), 'type', 'tfrecord')
    if (getattr(params, 'tfds_name', '') or params.file_type != 'tfrecord'
            or decoder_type != 'tfrecord' or not params.input_path):
        return {}
    return check_files(params.input_path, mode)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description='Checks TFRecord framing and CRCs; names the bad record.')
    parser.add_argument('input_path', nargs='+',
                        help='files, globs or comma-separated lists')
    parser.add_argument('--full', action='store_true',
                        help='verify every payload CRC (reads everything)')
    parser.add_argument('--crc_records', type=int, default=DEFAULT_CRC_RECORDS,
                        help='payload CRCs per file without --full')
    args = parser.parse_args(argv)
    try:
        counts = check_files(list(args.input_path),
                             'full' if args.full else 'framing',
                             args.crc_records)
    except (CorruptRecordError, FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    for path, n in counts.items():
        print(f'{path}: {n} records OK')
    return 0


if __name__ == '__main__':
    sys.exit(main())
