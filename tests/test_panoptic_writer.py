"""COCO panoptic prediction writer: encoding rules, a hand-checked 6x6 case,
and a round trip of the COCO sample GT through the writer (PQ 100)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from maskconver_tf.data.descriptor import DatasetDescriptor
from maskconver_tf.evaluation import pq
from maskconver_tf.evaluation.panoptic_writer import (
    PanopticPredictionWriter, decode_panoptic, encode_panoptic)

COCO = os.path.join(os.path.dirname(__file__), 'fixtures', 'coco_panoptic_sample')

SMALL = DatasetDescriptor.from_categories([
    {'id': 1, 'name': 'a', 'isthing': 1}, {'id': 2, 'name': 'b', 'isthing': 1},
    {'id': 5, 'name': 's', 'isthing': 0}, {'id': 7, 'name': 't', 'isthing': 0}])

# 6x6: things 1 (instances 3, 4 and one instance-0 pixel), 2 (instance 1);
# stuff 5 (two instance ids, still one segment), 7 (instance 9 ignored).
CATEGORY = np.array([[5, 5, 5, 5, 7, 7],
                     [5, 1, 1, 5, 7, 7],
                     [5, 1, 1, 2, 2, 0],
                     [0, 0, 1, 2, 2, 0],
                     [0, 0, 1, 1, 5, 5],
                     [0, 0, 0, 0, 5, 5]], np.int32)
INSTANCE = np.array([[0, 0, 0, 0, 9, 9],
                     [0, 3, 3, 0, 9, 9],
                     [0, 3, 4, 1, 1, 0],
                     [0, 0, 0, 1, 1, 0],
                     [0, 0, 4, 4, 2, 0],
                     [0, 0, 0, 0, 0, 0]], np.int32)
# Ids 1..N in (category, instance) order; areas and [x, y, w, h] by hand.
EXPECTED_SEGMENTS = [
    {'id': 1, 'category_id': 1, 'area': 3, 'bbox': [1, 1, 2, 2], 'iscrowd': 0,
     'score': 0.9},
    {'id': 2, 'category_id': 1, 'area': 3, 'bbox': [2, 2, 2, 3], 'iscrowd': 0},
    {'id': 3, 'category_id': 2, 'area': 4, 'bbox': [3, 2, 2, 2], 'iscrowd': 0},
    {'id': 4, 'category_id': 5, 'area': 11, 'bbox': [0, 0, 6, 6], 'iscrowd': 0},
    {'id': 5, 'category_id': 7, 'area': 4, 'bbox': [4, 0, 2, 2], 'iscrowd': 0},
]
EXPECTED_IDS = np.array([[4, 4, 4, 4, 5, 5],
                         [4, 1, 1, 4, 5, 5],
                         [4, 1, 2, 3, 3, 0],
                         [0, 0, 0, 3, 3, 0],
                         [0, 0, 2, 2, 4, 4],
                         [0, 0, 0, 0, 4, 4]])


def test_encode_hand_built_case():
    rgb, segments = encode_panoptic(CATEGORY, INSTANCE, SMALL, scores={3: 0.9})
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 6, 3)
    assert segments == EXPECTED_SEGMENTS
    np.testing.assert_array_equal(pq.rgb2id(rgb), EXPECTED_IDS)
    # The thing pixel without an instance, (3, 2), is void.
    assert pq.rgb2id(rgb)[3, 2] == 0


def test_writer_hand_built_case(tmp_path):
    writer = PanopticPredictionWriter(tmp_path / 'out', SMALL)
    annotation = writer.add(7, 'images/img7.jpg', CATEGORY, INSTANCE,
                            height=6, width=6, scores={3: 0.9})
    assert writer.write_json() == str(tmp_path / 'out' / 'predictions.json')
    png = tmp_path / 'out' / 'panoptic' / 'img7.png'
    np.testing.assert_array_equal(pq.rgb2id(np.asarray(Image.open(png))), EXPECTED_IDS)
    data = json.loads((tmp_path / 'out' / 'predictions.json').read_text())
    assert data['images'] == [{'id': 7, 'file_name': 'images/img7.jpg',
                               'height': 6, 'width': 6}]
    assert data['annotations'] == [annotation] == [
        {'image_id': 7, 'file_name': 'img7.png', 'segments_info': EXPECTED_SEGMENTS}]
    assert data['categories'] == SMALL.to_coco_categories()


def test_encode_rejects_bad_input():
    with pytest.raises(ValueError, match=r'category ids \[3\]'):
        encode_panoptic(np.full([2, 2], 3), np.zeros([2, 2], int), SMALL)
    with pytest.raises(ValueError, match='differ in shape'):
        encode_panoptic(np.zeros([2, 2], int), np.zeros([2, 3], int), SMALL)
    with pytest.raises(ValueError, match='integer'):
        encode_panoptic(np.zeros([2, 2], np.float32), np.zeros([2, 2], int), SMALL)
    with pytest.raises(ValueError, match='negative'):
        encode_panoptic(np.ones([2, 2], int), -np.ones([2, 2], int), SMALL)


def test_writer_rejects_bad_input(tmp_path):
    writer = PanopticPredictionWriter(tmp_path, SMALL)
    with pytest.raises(ValueError, match=r'image 1 \(a.jpg\).*6x6.*5x6'):
        writer.add(1, 'a.jpg', CATEGORY, INSTANCE, height=5, width=6)
    with pytest.raises(ValueError, match=r'image 1 \(a.jpg\): category_mask has '
                                         r'category ids \[3\]'):
        writer.add(1, 'a.jpg', np.full([2, 2], 3), np.zeros([2, 2], int))
    writer.add(1, 'a.jpg', CATEGORY, INSTANCE)
    with pytest.raises(ValueError, match='a.png is already used by image 1'):
        writer.add(2, 'other/a.jpg', CATEGORY, INSTANCE)
    with pytest.raises(ValueError, match='image id 1 was already added'):
        writer.add(1, 'b.jpg', CATEGORY, INSTANCE)


def test_coco_sample_round_trip_scores_100(tmp_path):
    gt_json = os.path.join(COCO, 'panoptic_examples.json')
    gt_dir = os.path.join(COCO, 'panoptic_examples')
    with open(gt_json) as f:
        gt = json.load(f)
    descriptor = DatasetDescriptor.from_json(gt_json)
    images = {im['id']: im for im in gt['images']}
    with PanopticPredictionWriter(tmp_path / 'eval', descriptor) as writer:
        for ann in gt['annotations']:
            image = images[ann['image_id']]
            ids = pq.read_panoptic_png(os.path.join(gt_dir, ann['file_name']), 'gt')
            # Crowd segments decode as ordinary instances (4b's prediction).
            category, instance = decode_panoptic(ids, ann['segments_info'], descriptor)
            writer.add(image['id'], image['file_name'], category, instance,
                       height=image['height'], width=image['width'])
    results = pq.pq_compute(gt_json, writer.json_path, gt_dir, writer.png_dir)
    for group, n in (('All', 8), ('Things', 4), ('Stuff', 4)):
        assert results[group] == {'pq': 1.0, 'sq': 1.0, 'rq': 1.0, 'n': n}
    # Same pixel partition and, for non-crowd segments, the GT's area and bbox.
    with open(writer.json_path) as f:
        pred = json.load(f)
    for ann, pann in zip(gt['annotations'], pred['annotations']):
        assert pann['file_name'] == ann['file_name']
        assert len(pann['segments_info']) == len(ann['segments_info'])
        gt_boxes = sorted((s['category_id'], s['area'], s['bbox'])
                          for s in ann['segments_info'])
        ours = sorted((s['category_id'], s['area'], s['bbox'])
                      for s in pann['segments_info'])
        assert ours == gt_boxes
