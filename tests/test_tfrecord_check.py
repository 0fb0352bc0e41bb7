"""Tests of the TFRecord pre-flight check (framing, CRCs, error messages)."""

import os

import pytest
import tensorflow as tf

from maskconver_tf.data import tfrecord_check as tc

PAYLOADS = [bytes([i % 251]) * (100 + 37 * i) for i in range(12)]


def _offsets():
    """Start offsets of PAYLOADS' records (12-byte header + data + 4)."""
    out, off = [], 0
    for p in PAYLOADS:
        out.append(off)
        off += 12 + len(p) + 4
    return out


@pytest.fixture
def record_file(tmp_path):
    path = str(tmp_path / 'data-00000-of-00001.tfrecord')
    with tf.io.TFRecordWriter(path) as w:
        for p in PAYLOADS:
            w.write(p)
    return path


def _flip(path, offset):
    with open(path, 'r+b') as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5a]))


def test_crc32c_known_vectors():
    # RFC 3720 check value and TF's masked form of the same CRC.
    assert tc.crc32c(b'123456789') == 0xe3069283
    assert tc.crc32c(b'') == 0
    crc = 0xe3069283
    masked = (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff
    assert tc.masked_crc32c(b'123456789') == masked


def test_valid_file_counts_records(record_file):
    assert tc.check_file(record_file) == len(PAYLOADS)
    assert tc.check_file(record_file, mode='full') == len(PAYLOADS)
    # The walk agrees with TF's own reader.
    assert sum(1 for _ in tf.data.TFRecordDataset(record_file)) == len(PAYLOADS)


def test_truncated_file_names_file_record_and_offset(record_file):
    size = os.path.getsize(record_file)
    with open(record_file, 'r+b') as f:
        f.truncate(size - 10)  # cuts into the last record's payload
    with pytest.raises(tc.CorruptRecordError) as e:
        tc.check_file(record_file)
    err = e.value
    assert err.path == record_file
    assert err.index == len(PAYLOADS) - 1
    assert err.offset == _offsets()[-1]
    msg = str(err)
    assert '\n' not in msg
    assert record_file in msg and 'record 11' in msg and 'truncated' in msg


def test_truncated_header(record_file):
    with open(record_file, 'r+b') as f:
        f.truncate(_offsets()[5] + 7)
    with pytest.raises(tc.CorruptRecordError, match='record 5 .*truncated header'):
        tc.check_file(record_file)


def test_corrupt_length_crc_found_at_any_record(record_file):
    # Header of record 9: beyond the payload-CRC window, found by the walk.
    _flip(record_file, _offsets()[9] + 1)
    with pytest.raises(tc.CorruptRecordError) as e:
        tc.check_file(record_file, crc_records=2)
    assert (e.value.index, e.value.offset) == (9, _offsets()[9])
    assert 'length CRC mismatch' in str(e.value)


def test_corrupt_payload_inside_crc_window(record_file):
    _flip(record_file, _offsets()[2] + 12 + 50)
    with pytest.raises(tc.CorruptRecordError) as e:
        tc.check_file(record_file, crc_records=4)
    assert (e.value.index, e.value.offset) == (2, _offsets()[2])
    assert 'data CRC' in str(e.value)


def test_corrupt_payload_beyond_window_needs_full_mode(record_file):
    _flip(record_file, _offsets()[10] + 12 + 3)
    # The default bounded check reads only the first payloads (documented).
    assert tc.check_file(record_file, crc_records=4) == len(PAYLOADS)
    with pytest.raises(tc.CorruptRecordError) as e:
        tc.check_file(record_file, mode='full')
    assert (e.value.index, e.value.offset) == (10, _offsets()[10])


def test_not_a_tfrecord(tmp_path):
    path = str(tmp_path / 'image.jpg')
    with open(path, 'wb') as f:
        f.write(b'\xff\xd8\xff\xe0' + bytes(200))
    with pytest.raises(tc.CorruptRecordError, match='record 0 at byte 0'):
        tc.check_file(path)


def test_check_files_globs_lists_and_modes(record_file, tmp_path, monkeypatch):
    second = str(tmp_path / 'data-b.tfrecord')
    with tf.io.TFRecordWriter(second) as w:
        w.write(b'x')
    counts = tc.check_files(str(tmp_path / 'data*'))
    assert counts == {record_file: len(PAYLOADS), second: 1}
    assert tc.check_files(f'{record_file},{second}') == counts
    assert tc.check_files([record_file, second]) == counts
    with pytest.raises(ValueError, match='does not match any files'):
        tc.check_files(str(tmp_path / 'nothing*'))
    with pytest.raises(FileNotFoundError, match='missing.tfrecord'):
        tc.check_files(str(tmp_path / 'missing.tfrecord'))
    _flip(second, 1)
    monkeypatch.setenv(tc.ENV_VAR, 'off')
    assert tc.check_files([record_file, second]) == {}
    monkeypatch.setenv(tc.ENV_VAR, 'bogus')
    with pytest.raises(ValueError, match='MASKCONVER_TFRECORD_CHECK'):
        tc.check_files(record_file)
    monkeypatch.setenv(tc.ENV_VAR, 'framing')
    with pytest.raises(tc.CorruptRecordError, match='data-b.tfrecord: record 0'):
        tc.check_files([record_file, second])


def test_check_data_config_skips_tfds(record_file):
    from maskconver_tf.configs import maskconver_task as task_cfg
    _flip(record_file, 1)
    cfg = task_cfg.DataConfig(input_path=record_file)
    with pytest.raises(tc.CorruptRecordError):
        tc.check_data_config(cfg)
    tfds_cfg = task_cfg.DataConfig(tfds_name='coco/2017_panoptic',
                                   decoder=task_cfg.DataDecoder(type='tfds'))
    assert tc.check_data_config(tfds_cfg) == {}


def test_check_data_config_full_mode_finds_late_payloads(record_file,
                                                        monkeypatch):
    from maskconver_tf.configs import maskconver_task as task_cfg
    _flip(record_file, _offsets()[10] + 12 + 3)
    cfg = task_cfg.DataConfig(input_path=record_file)
    assert tc.check_data_config(cfg) == {record_file: len(PAYLOADS)}
    # The explicit mode wins over the environment (the train CLI's check
    # after a DataLossError).
    monkeypatch.setenv(tc.ENV_VAR, 'off')
    with pytest.raises(tc.CorruptRecordError) as e:
        tc.check_data_config(cfg, mode='full')
    assert (e.value.path, e.value.index) == (record_file, 10)


def test_cli_reports_one_line(record_file, capsys):
    assert tc.main([record_file]) == 0
    assert f'{record_file}: {len(PAYLOADS)} records OK' in capsys.readouterr().out
    _flip(record_file, _offsets()[3] + 2)
    assert tc.main([record_file]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith('error: ')
    assert f'{record_file}: record 3 at byte {_offsets()[3]}' in err
