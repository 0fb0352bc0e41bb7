"""Tests for COCO-panoptic validation and conversion to TFRecords."""

import io
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from maskconver_tf.data import coco_panoptic
from maskconver_tf.data import create_tfrecords
from maskconver_tf.data.descriptor import DatasetDescriptor
from maskconver_tf.dataloaders.decoder import TfExampleDecoder

SAMPLE = pathlib.Path(__file__).parent / 'fixtures' / 'coco_panoptic_sample'
REPO = pathlib.Path(__file__).resolve().parents[1]

# Non-contiguous ids; tests add ids above 255 where they need them.
TINY_CATEGORIES = [
    {'id': 3, 'name': 'cat', 'isthing': 1, 'color': [200, 0, 0]},
    {'id': 7, 'name': 'dog', 'isthing': 1, 'color': [0, 200, 0]},
    {'id': 20, 'name': 'grass', 'isthing': 0, 'color': [0, 0, 200]},
]


# Helpers ---------------------------------------------------------------------
def id_to_rgb(ids):
    ids = np.asarray(ids, np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(
        np.uint8)


def expected_masks(png_path, segments_info, descriptor, skip_crowd):
    """Independent numpy reference: segment loop as Model Garden's writer."""
    rgb = np.asarray(Image.open(png_path), np.int64)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    category = np.zeros(ids.shape, np.int32)
    instance = np.zeros(ids.shape, np.int32)
    for index, seg in enumerate(segments_info):
        if skip_crowd and seg['iscrowd']:
            continue
        on = ids == seg['id']
        category[on] = seg['category_id']
        if descriptor.is_thing(seg['category_id']):
            instance[on] = index + 1
    return category, instance


def read_records(paths, **decoder_kwargs):
    """All records of `paths` (in order) decoded to numpy, plus raw features."""
    decoder = TfExampleDecoder(**decoder_kwargs)
    out = []
    for path in paths:
        for record in tf.data.TFRecordDataset(str(path)):
            decoded = {k: v.numpy() for k, v in decoder.decode(record).items()}
            example = tf.train.Example.FromString(record.numpy())
            decoded['features'] = example.features.feature
            out.append(decoded)
    return out


def make_image(path, height, width, seed=0, mode='RGB', fmt='JPEG'):
    rng = np.random.RandomState(seed)
    img = Image.fromarray(rng.randint(0, 256, [height, width, 3], np.uint8))
    if mode != 'RGB':
        img = img.convert(mode)
    img.save(path, format=fmt)


def write_dataset(root, entries, categories=TINY_CATEGORIES):
    """Writes a tiny COCO-panoptic set.

    entries: dicts with `id`, `ids` int [H, W] (the PNG), `segments`
    [(segment id, category id, iscrowd)], optional `image_size` (H, W),
    `mode`, `fmt`, `image_bytes`, `mask_bytes`, `no_image`, `no_mask`.
    """
    root = pathlib.Path(root)
    (root / 'images').mkdir(parents=True, exist_ok=True)
    (root / 'panoptic').mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for e in entries:
        ids = np.asarray(e['ids'])
        height, width = e.get('image_size', ids.shape)
        ext = 'png' if e.get('fmt') == 'PNG' else 'jpg'
        name = f'{e["id"]:06d}'
        image_path = root / 'images' / f'{name}.{ext}'
        if 'image_bytes' in e:
            image_path.write_bytes(e['image_bytes'])
        elif not e.get('no_image'):
            make_image(image_path, height, width, seed=e['id'],
                       mode=e.get('mode', 'RGB'), fmt=e.get('fmt', 'JPEG'))
        mask_path = root / 'panoptic' / f'{name}.png'
        if 'mask_bytes' in e:
            mask_path.write_bytes(e['mask_bytes'])
        elif not e.get('no_mask'):
            Image.fromarray(id_to_rgb(ids)).save(mask_path)
        images.append({'id': e['id'], 'file_name': image_path.name,
                       'height': int(height), 'width': int(width)})
        segments = []
        for seg_id, cat, crowd in e['segments']:
            area = int((ids == seg_id).sum())
            segments.append({'id': seg_id, 'category_id': cat,
                             'iscrowd': crowd, 'area': area,
                             'bbox': [0, 0, 1, 1]})
        annotations.append({'image_id': e['id'], 'file_name': mask_path.name,
                            'segments_info': segments})
    data = {'images': images, 'annotations': annotations,
            'categories': categories}
    json_path = root / 'panoptic.json'
    json_path.write_text(json.dumps(data))
    return json_path


def convert_tiny(tmp_path, entries, categories=TINY_CATEGORIES, **kwargs):
    json_path = write_dataset(tmp_path / 'data', entries, categories)
    report = create_tfrecords.convert(
        tmp_path / 'data' / 'images', json_path, tmp_path / 'data' / 'panoptic',
        str(tmp_path / 'out' / 'rec'), **kwargs)
    return report, read_records(report.output_files)


def good_ids(seed=0, size=(6, 8)):
    """A 6x8 PNG: grass (id 9) background, cat (id 1), dog (id 2)."""
    ids = np.full(size, 9)
    ids[1:3, 1:4] = 1
    ids[3:5, 5:7] = 2
    ids[0, 0] = 0
    return ids


GOOD_SEGMENTS = [(1, 3, 0), (2, 7, 0), (9, 20, 0)]


def only(problems, reason):
    found = [p for p in problems if p.reason == reason]
    assert found, f'no {reason} in {problems}'
    return found


# Real COCO images ------------------------------------------------------------
@pytest.mark.parametrize('skip_crowd', [False, True])
def test_coco_sample_round_trip(tmp_path, skip_crowd):
    json_path = SAMPLE / 'panoptic_examples.json'
    descriptor = DatasetDescriptor.builtin('coco')
    report = create_tfrecords.convert(
        SAMPLE / 'input_images', json_path, SAMPLE / 'panoptic_examples',
        str(tmp_path / 'coco'), num_shards=2, skip_crowd=skip_crowd,
        descriptor=descriptor)
    data = json.loads(json_path.read_text())
    assert report.images_written == 2 and report.images_total == 2
    assert report.segments_written == 18 + 32
    assert report.crowd_segments_voided == (3 if skip_crowd else 0)
    assert not report.images_skipped and not report.segments_skipped
    assert [os.path.basename(p) for p in report.output_files] == [
        'coco-00000-of-00002.tfrecord', 'coco-00001-of-00002.tfrecord']

    records = read_records(report.output_files, include_semantic_mask=True)
    assert [r['source_id'] for r in records] == [b'142238', b'439180']
    for record, image, ann in zip(records, data['images'], data['annotations']):
        segs = ann['segments_info']
        category, instance = expected_masks(
            SAMPLE / 'panoptic_examples' / ann['file_name'], segs, descriptor,
            skip_crowd)
        np.testing.assert_array_equal(record['category_mask'], category)
        np.testing.assert_array_equal(record['instance_mask'], instance)
        # Raw label mode: the semantic channel is the category id.
        np.testing.assert_array_equal(record['semantic_mask'], category)
        assert record['image'].shape == (image['height'], image['width'], 3)
        assert record['features']['image/encoded'].bytes_list.value[0] == (
            SAMPLE / 'input_images' / image['file_name']).read_bytes()
        assert record['features']['image/format'].bytes_list.value[0] == b'jpeg'
        np.testing.assert_array_equal(record['groundtruth_classes'],
                                      [s['category_id'] for s in segs])
        np.testing.assert_array_equal(record['groundtruth_is_crowd'],
                                      [bool(s['iscrowd']) for s in segs])
        np.testing.assert_allclose(record['groundtruth_area'],
                                   [s['area'] for s in segs])
        # Boxes from the mask equal the JSON boxes, normalised.
        h, w = image['height'], image['width']
        boxes = [[y / h, x / w, (y + bh) / h, (x + bw) / w]
                 for x, y, bw, bh in (s['bbox'] for s in segs)]
        np.testing.assert_allclose(record['groundtruth_boxes'], boxes,
                                   atol=1e-6)
        names = [descriptor.category(s['category_id']).name.encode()
                 for s in segs]
        assert list(record['features']['image/object/class/text']
                    .bytes_list.value) == names
        assert len(record['features']['image/object/mask'].bytes_list.value) \
            == len(segs)
    # Crowd pixels: instance ids without skip_crowd, void with it.
    crowd_ids = [i + 1 for i, s in enumerate(data['annotations'][1]
                                             ['segments_info']) if s['iscrowd']]
    present = np.isin(crowd_ids, records[1]['instance_mask'])
    assert present.all() != skip_crowd and present.any() != skip_crowd


def test_contiguous_semantic_mask_and_object_masks(tmp_path):
    report, records = convert_tiny(
        tmp_path, [{'id': 5, 'ids': good_ids(), 'segments': GOOD_SEGMENTS}],
        label_mode='contiguous')
    assert report.images_written == 1 and report.segments_written == 3
    rec = read_records(report.output_files, include_semantic_mask=True,
                       include_mask=True)[0]
    ids = good_ids()
    # Channels of ids 3, 7, 20 in contiguous mode are 1, 2, 3.
    expected_semantic = np.select([ids == 1, ids == 2, ids == 9], [1, 2, 3], 0)
    np.testing.assert_array_equal(rec['semantic_mask'], expected_semantic)
    expected_category = np.select([ids == 1, ids == 2, ids == 9], [3, 7, 20], 0)
    np.testing.assert_array_equal(rec['category_mask'], expected_category)
    np.testing.assert_array_equal(rec['instance_mask'],
                                  np.select([ids == 1, ids == 2], [1, 2], 0))
    for k, seg_id in enumerate([1, 2, 9]):
        np.testing.assert_array_equal(rec['groundtruth_instance_masks'][k],
                                      (ids == seg_id).astype(np.float32))
    np.testing.assert_allclose(rec['groundtruth_boxes'][0],
                               [1 / 6, 1 / 8, 3 / 6, 4 / 8])
    assert records[0]['features']['image/source_id'].bytes_list.value[0] == b'5'


# Built-in shapes set ---------------------------------------------------------
def test_shapes_round_trip_sharding_and_processes(tmp_path):
    from maskconver_tf.data import shapes
    json_path = shapes.generate_dataset(str(tmp_path / 'shapes'), 5,
                                        image_size=64, seed=3)
    data = json.loads(pathlib.Path(json_path).read_text())
    descriptor = DatasetDescriptor.from_json(json_path)
    kwargs = dict(image_dir=tmp_path / 'shapes' / 'images',
                  panoptic_json=json_path,
                  panoptic_masks_dir=tmp_path / 'shapes' / 'panoptic',
                  num_shards=2)
    report = create_tfrecords.convert(output_prefix=str(tmp_path / 'a' / 's'),
                                      **kwargs)
    assert report.images_written == 5 and not report.problems
    assert report.segments_written == sum(
        len(a['segments_info']) for a in data['annotations'])
    records = read_records(report.output_files)
    # Round-robin: shard 0 holds images 0, 2, 4; shard 1 images 1, 3.
    order = [0, 2, 4, 1, 3]
    assert [r['source_id'] for r in records] == [
        str(data['images'][i]['id']).encode() for i in order]
    for record, i in zip(records, order):
        ann = data['annotations'][i]
        category, instance = expected_masks(
            tmp_path / 'shapes' / 'panoptic' / ann['file_name'],
            ann['segments_info'], descriptor, skip_crowd=False)
        np.testing.assert_array_equal(record['category_mask'], category)
        np.testing.assert_array_equal(record['instance_mask'], instance)
        assert record['image'].shape == (64, 64, 3)
    # A worker pool writes byte-identical shards.
    pooled = create_tfrecords.convert(
        output_prefix=str(tmp_path / 'b' / 's'), num_processes=2, **kwargs)
    for a, b in zip(report.output_files, pooled.output_files):
        assert pathlib.Path(a).read_bytes() == pathlib.Path(b).read_bytes()


# Validation: segment-level problems ------------------------------------------
def test_png_id_missing_from_segments_info_becomes_void(tmp_path):
    ids = good_ids()
    ids[5, 0:3] = 77  # 3 pixels of an unlisted segment
    report, records = convert_tiny(
        tmp_path, [{'id': 11, 'ids': ids, 'segments': GOOD_SEGMENTS}])
    assert report.images_written == 1 and report.segments_written == 3
    (p,) = only(report.segments_skipped, 'id_not_in_segments_info')
    assert p.image_id == 11 and p.segment_id == 77
    assert p.file.endswith('000011.png')
    assert '000011.png: image 11, segment 77' in p.message
    assert '3 pixels written as void' in p.message
    assert report.skip_reasons('segment') == {'id_not_in_segments_info': 1}
    assert (records[0]['category_mask'][5, 0:3] == 0).all()
    assert (records[0]['instance_mask'][5, 0:3] == 0).all()
    assert 'id_not_in_segments_info: 1' in report.summary()


def test_segments_info_id_missing_from_png(tmp_path):
    report, records = convert_tiny(
        tmp_path, [{'id': 12, 'ids': good_ids(),
                    'segments': [(5, 3, 0)] + GOOD_SEGMENTS}])
    (p,) = only(report.segments_skipped, 'id_not_in_png')
    assert (p.image_id, p.segment_id) == (12, 5)
    assert '000012.png: image 12, segment 5' in p.message
    assert report.segments_written == 3
    # The dropped entry shifts instance ids: object k keeps id k + 1.
    np.testing.assert_array_equal(records[0]['groundtruth_classes'], [3, 7, 20])
    ids = good_ids()
    np.testing.assert_array_equal(records[0]['instance_mask'],
                                  np.select([ids == 1, ids == 2], [1, 2], 0))


def test_unknown_category(tmp_path):
    report, records = convert_tiny(
        tmp_path, [{'id': 13, 'ids': good_ids(),
                    'segments': [(1, 3, 0), (2, 99, 0), (9, 20, 0)]}])
    (p,) = only(report.segments_skipped, 'unknown_category')
    assert (p.image_id, p.segment_id) == (13, 2)
    assert 'unknown category id 99' in p.message
    assert '000013.png: image 13, segment 2' in p.message
    assert report.segments_written == 2
    ids = good_ids()
    assert (records[0]['category_mask'][ids == 2] == 0).all()
    assert (records[0]['instance_mask'][ids == 2] == 0).all()
    np.testing.assert_array_equal(records[0]['groundtruth_classes'], [3, 20])


def test_duplicate_and_invalid_segment_ids(tmp_path):
    report, _ = convert_tiny(
        tmp_path, [{'id': 14, 'ids': good_ids(),
                    'segments': GOOD_SEGMENTS + [(1, 7, 0), (0, 3, 0)]}])
    assert report.skip_reasons('segment') == {'duplicate_segment_id': 1,
                                              'invalid_segment_id': 1}
    assert only(report.segments_skipped, 'duplicate_segment_id')[0] \
        .segment_id == 1
    assert report.segments_written == 3


# Validation: image-level skips -----------------------------------------------
def test_bad_files_are_skipped_and_conversion_continues(tmp_path):
    ids = good_ids()
    good_jpeg = io.BytesIO()
    Image.fromarray(np.zeros([6, 8, 3], np.uint8)).save(good_jpeg, 'JPEG')
    entries = [
        {'id': 21, 'ids': ids, 'segments': GOOD_SEGMENTS, 'no_image': True},
        {'id': 22, 'ids': ids, 'segments': GOOD_SEGMENTS,
         'image_bytes': good_jpeg.getvalue()[:60]},  # truncated JPEG
        {'id': 23, 'ids': ids, 'segments': GOOD_SEGMENTS, 'no_mask': True},
        {'id': 24, 'ids': ids, 'segments': GOOD_SEGMENTS,
         'mask_bytes': b'\x89PNG\r\n\x1a\n garbage'},
        {'id': 25, 'ids': ids, 'segments': GOOD_SEGMENTS,
         'image_size': (7, 8)},
        {'id': 26, 'ids': ids, 'segments': GOOD_SEGMENTS},
    ]
    report, records = convert_tiny(tmp_path, entries)
    assert report.images_written == 1 and report.images_total == 6
    assert [r['source_id'] for r in records] == [b'26']
    assert report.skip_reasons('image') == {
        'corrupt_image': 1, 'corrupt_mask': 1, 'missing_image': 1,
        'missing_mask': 1, 'size_mismatch': 1}
    by_reason = {p.reason: p for p in report.images_skipped}
    expected_files = {'missing_image': '000021.jpg', 'corrupt_image': '000022.jpg',
                      'missing_mask': '000023.png', 'corrupt_mask': '000024.png',
                      'size_mismatch': '000025.png'}
    expected_ids = {'missing_image': 21, 'corrupt_image': 22, 'missing_mask': 23,
                    'corrupt_mask': 24, 'size_mismatch': 25}
    for reason, name in expected_files.items():
        p = by_reason[reason]
        assert p.file.endswith(name) and p.image_id == expected_ids[reason]
        assert f'{name}: image {expected_ids[reason]}:' in p.message
        assert 'image skipped' in p.message
    assert '6x8 (HxW)' in by_reason['size_mismatch'].message
    assert '7x8' in by_reason['size_mismatch'].message
    summary = report.summary()
    assert summary.startswith('wrote 1 of 6 images and 3 segments')
    assert ('skipped 5 images (corrupt_image: 1, corrupt_mask: 1, '
            'missing_image: 1, missing_mask: 1, size_mismatch: 1)') in summary


def test_json_index_problems(tmp_path):
    json_path = write_dataset(tmp_path / 'data', [
        {'id': 31, 'ids': good_ids(), 'segments': GOOD_SEGMENTS},
        {'id': 32, 'ids': good_ids(), 'segments': GOOD_SEGMENTS}])
    data = json.loads(json_path.read_text())
    data['images'].append(dict(data['images'][0]))          # duplicate id 31
    data['annotations'].append({'image_id': 999, 'file_name': 'x.png',
                                'segments_info': []})        # no such image
    data['annotations'].pop(1)                               # 32 unannotated
    json_path.write_text(json.dumps(data))
    report = create_tfrecords.convert(
        tmp_path / 'data' / 'images', json_path, tmp_path / 'data' / 'panoptic',
        str(tmp_path / 'out' / 'r'))
    assert report.images_written == 1 and report.images_total == 3
    assert report.skip_reasons('image') == {
        'bad_annotation': 1, 'duplicate_image_id': 1, 'no_annotation': 1}
    assert only(report.images_skipped, 'no_annotation')[0].image_id == 32
    assert only(report.images_skipped, 'bad_annotation')[0].image_id == 999


# Bit depths ------------------------------------------------------------------
def _png_bit_depth(png_bytes):
    return png_bytes[24]


def test_more_than_255_segments_and_ids_round_trip_16bit(tmp_path):
    size = (20, 20)
    ids = np.arange(1, 401).reshape(size)
    ids[ids > 300] = 1000  # one stuff segment; 300 thing segments
    segments = [(i, 3 if i % 2 else 7, 0) for i in range(1, 301)]
    segments.append((1000, 300, 0))
    categories = TINY_CATEGORIES + [
        {'id': 300, 'name': 'far-stuff', 'isthing': 0}]
    report, records = convert_tiny(tmp_path, [
        {'id': 41, 'ids': ids, 'segments': segments, 'fmt': 'PNG'}],
        categories=categories, label_mode='raw')
    assert report.images_written == 1 and report.segments_written == 301
    rec = read_records(report.output_files, include_semantic_mask=True)[0]
    feats = rec['features']
    for key in ('image/panoptic/category_mask', 'image/panoptic/instance_mask',
                'image/segmentation/class/encoded'):
        assert _png_bit_depth(feats[key].bytes_list.value[0]) == 16, key
    expected_instance = np.where(ids <= 300, ids, 0)
    expected_category = np.where(ids <= 300, np.where(ids % 2, 3, 7), 300)
    np.testing.assert_array_equal(rec['instance_mask'], expected_instance)
    np.testing.assert_array_equal(rec['category_mask'], expected_category)
    np.testing.assert_array_equal(rec['semantic_mask'], expected_category)
    assert rec['instance_mask'].max() == 300


def test_small_values_stay_8bit(tmp_path):
    report, records = convert_tiny(
        tmp_path, [{'id': 42, 'ids': good_ids(), 'segments': GOOD_SEGMENTS}])
    feats = records[0]['features']
    for key in ('image/panoptic/category_mask', 'image/panoptic/instance_mask',
                'image/segmentation/class/encoded'):
        assert _png_bit_depth(feats[key].bytes_list.value[0]) == 8, key


def test_more_than_65535_segments_refused(tmp_path):
    ids = np.arange(1, 256 * 256 + 1).reshape(256, 256)
    segments = [(i, 3, 0) for i in range(1, 256 * 256 + 1)]
    report, records = convert_tiny(tmp_path, [
        {'id': 43, 'ids': ids, 'segments': segments, 'fmt': 'PNG'},
        {'id': 44, 'ids': good_ids(), 'segments': GOOD_SEGMENTS}])
    (p,) = only(report.images_skipped, 'too_many_segments')
    assert p.image_id == 43 and '65536 segments' in p.message
    assert 'at most 65535' in p.message
    assert [r['source_id'] for r in records] == [b'44']


def test_encode_mask_png_refuses_overflow():
    with pytest.raises(ValueError, match='exceeds 65535'):
        create_tfrecords.encode_mask_png(np.array([[65536]]), 'instance mask')


def test_category_ids_beyond_16bit_refused(tmp_path):
    categories = TINY_CATEGORIES + [{'id': 70000, 'name': 'x', 'isthing': 0}]
    with pytest.raises(ValueError, match='category id 70000 exceeds 65535'):
        convert_tiny(tmp_path, [{'id': 45, 'ids': good_ids(),
                                 'segments': GOOD_SEGMENTS}],
                     categories=categories)


# Image modes -----------------------------------------------------------------
@pytest.mark.parametrize('mode,fmt', [('L', 'JPEG'), ('RGBA', 'PNG'),
                                      ('CMYK', 'JPEG'), ('P', 'PNG'),
                                      ('LA', 'PNG')])
def test_non_rgb_images_are_converted(tmp_path, mode, fmt):
    report, records = convert_tiny(tmp_path, [
        {'id': 51, 'ids': good_ids(), 'segments': GOOD_SEGMENTS,
         'mode': mode, 'fmt': fmt}])
    assert report.images_written == 1 and not report.images_skipped
    (note,) = only(report.notes, 'converted_mode')
    assert note.image_id == 51 and f'{mode} {fmt}' in note.message
    rec = records[0]
    assert rec['features']['image/format'].bytes_list.value[0] == b'png'
    assert rec['image'].shape == (6, 8, 3)
    src = tmp_path / 'data' / 'images' / ('000051.' +
                                          ('png' if fmt == 'PNG' else 'jpg'))
    np.testing.assert_array_equal(rec['image'],
                                  np.asarray(Image.open(src).convert('RGB')))


def test_rgb_png_kept_as_is(tmp_path):
    report, records = convert_tiny(tmp_path, [
        {'id': 52, 'ids': good_ids(), 'segments': GOOD_SEGMENTS, 'fmt': 'PNG'}])
    feats = records[0]['features']
    assert feats['image/format'].bytes_list.value[0] == b'png'
    assert feats['image/encoded'].bytes_list.value[0] == (
        tmp_path / 'data' / 'images' / '000052.png').read_bytes()
    assert not report.notes


# CLI -------------------------------------------------------------------------
def _run_cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    return subprocess.run(
        [sys.executable, '-m', 'maskconver_tf.data.create_tfrecords', *args],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def test_cli_end_to_end(tmp_path):
    ids = good_ids()
    crowd_segments = [(1, 3, 1), (2, 7, 0), (9, 20, 0)]
    json_path = write_dataset(tmp_path / 'data', [
        {'id': 61, 'ids': ids, 'segments': crowd_segments},
        {'id': 62, 'ids': ids, 'segments': GOOD_SEGMENTS, 'no_image': True},
        {'id': 63, 'ids': ids, 'segments': [(1, 3, 0), (2, 99, 0), (9, 20, 0)]},
    ])
    prefix = tmp_path / 'out' / 'train'
    result = _run_cli(
        '--image_dir', str(tmp_path / 'data' / 'images'),
        '--panoptic_json', str(json_path),
        '--panoptic_masks_dir', str(tmp_path / 'data' / 'panoptic'),
        '--output_prefix', str(prefix), '--num_shards', '2', '--skip_crowd',
        '--label_mode', 'raw', '--report_json', str(tmp_path / 'report.json'))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        'maskconver_tf.data.create_tfrecords: wrote 2 of 3 images and 5 '
        'segments to 2 shard(s); skipped 1 images (missing_image: 1) and 1 '
        'segments (unknown_category: 1); 1 crowd segments written as void')
    assert '000062.jpg: image 62: image file not found' in result.stderr
    assert '000063.png: image 63, segment 2: unknown category id 99' \
        in result.stderr
    shards = sorted(p.name for p in (tmp_path / 'out').iterdir())
    assert shards == ['train-00000-of-00002.tfrecord',
                      'train-00001-of-00002.tfrecord']
    records = read_records([tmp_path / 'out' / s for s in shards])
    assert [r['source_id'] for r in records] == [b'61', b'63']
    # --skip_crowd: the crowd cat (segment 1) is void in image 61.
    assert (records[0]['category_mask'][ids == 1] == 0).all()
    assert (records[1]['category_mask'][ids == 1] == 3).all()
    report = json.loads((tmp_path / 'report.json').read_text())
    assert report['images_written'] == 2
    assert report['images_skipped'][0]['reason'] == 'missing_image'
    assert report['segments_skipped'][0]['segment_id'] == 2


def test_cli_bad_input_one_line_error(tmp_path):
    (tmp_path / 'i').mkdir()
    result = _run_cli('--image_dir', str(tmp_path / 'i'),
                      '--panoptic_json', str(tmp_path / 'missing.json'),
                      '--panoptic_masks_dir', str(tmp_path / 'i'),
                      '--output_prefix', str(tmp_path / 'o'))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith('maskconver_tf.data.create_tfrecords: error:')
    assert 'missing.json' in lines[-1]


def test_load_example_direct_api():
    """The validation API alone: one image in, arrays and problems out."""
    index = coco_panoptic.load_panoptic_json(SAMPLE / 'panoptic_examples.json')
    descriptor = DatasetDescriptor.from_categories(index.categories)
    image = index.images[0]
    example, problems = coco_panoptic.load_example(
        image, index.annotations[image['id']], SAMPLE / 'input_images',
        SAMPLE / 'panoptic_examples', descriptor)
    assert problems == []
    assert example.category_mask.shape == (427, 640)
    assert example.instance_mask.dtype == np.int32
    assert len(example.segments) == 18
