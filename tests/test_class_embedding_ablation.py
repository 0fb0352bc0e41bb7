"""Pairs-only PQ of the class-embedding ablation, on hand-made predictions."""

import json
import os
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import class_embedding_ablation as ablation  # noqa: E402
from maskconver_tf.data import shapes  # noqa: E402
from maskconver_tf.evaluation import pq as pq_lib  # noqa: E402


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('pairs')
    gt_json = shapes.generate_dataset(str(root / 'val'), 16, image_size=96,
                                      seed=3)
    with open(gt_json) as f:
        gt = json.load(f)
    assert sum(bool(a['concentric_pairs']) for a in gt['annotations']) >= 4
    return root, gt_json, str(root / 'val' / 'panoptic'), gt


def _pair_areas(gt, gt_dir):
    """[(ring area, disc area)] over all pairs, from the PNGs."""
    areas = []
    for ann in gt['annotations']:
        ids = pq_lib.read_panoptic_png(os.path.join(gt_dir, ann['file_name']),
                                       'gt')
        for ring, disc in ann['concentric_pairs']:
            areas.append((int((ids == ring).sum()), int((ids == disc).sum())))
    return areas


def test_ground_truth_as_prediction_scores_100(dataset, tmp_path):
    root, gt_json, gt_dir, gt = dataset
    result = ablation.pairs_only_pq(gt_json, gt_dir, gt_json, gt_dir,
                                    str(tmp_path / 'pairs'))
    n_pairs = sum(len(a['concentric_pairs']) for a in gt['annotations'])
    assert result['pairs'] == n_pairs
    assert result['images'] == sum(bool(a['concentric_pairs'])
                                   for a in gt['annotations'])
    assert result['pq'] == pytest.approx(1.0)
    assert (result['tp'], result['fp'], result['fn']) == (2 * n_pairs, 0, 0)
    # Other segments became void in the written ground truth.
    written = json.loads((tmp_path / 'pairs' / 'panoptic.json').read_text())
    for ann in written['annotations']:
        ids = pq_lib.read_panoptic_png(
            str(tmp_path / 'pairs' / 'panoptic' / ann['file_name']), 'w')
        keep = {s for pair in ann['concentric_pairs'] for s in pair}
        assert set(np.unique(ids)) <= keep | {0}
        assert {s['id'] for s in ann['segments_info']} == keep


def test_merged_ring_and_disc_lose_the_disc(dataset, tmp_path):
    """A center collision: one mask (the ring's class) covers both."""
    root, gt_json, gt_dir, gt = dataset
    pred_dir = tmp_path / 'pred'
    shutil.copytree(gt_dir, pred_dir)
    pred = json.loads(open(gt_json).read())
    for ann in pred['annotations']:
        path = pred_dir / ann['file_name']
        ids = pq_lib.read_panoptic_png(str(path), 'pred')
        discs = {d for _, d in ann['concentric_pairs']}
        for ring, disc in ann['concentric_pairs']:
            ids[ids == disc] = ring
        Image.fromarray(pq_lib.id2rgb(ids)).save(path)
        ann['segments_info'] = [s for s in ann['segments_info']
                                if s['id'] not in discs]
    pred_json = tmp_path / 'pred.json'
    pred_json.write_text(json.dumps(pred))
    result = ablation.pairs_only_pq(gt_json, gt_dir, str(pred_json),
                                    str(pred_dir), str(tmp_path / 'pairs'))
    # Ring IoU = ring / (ring + disc): matched iff > 0.5.
    areas = _pair_areas(gt, gt_dir)
    ious = [r / (r + d) for r, d in areas]
    tp = sum(iou > 0.5 for iou in ious)
    n = len(areas)
    assert (result['tp'], result['fp'], result['fn']) == (
        tp, n - tp, n + (n - tp))
    ring_id = next(c['id'] for c in gt['categories'] if c['name'] == 'ring')
    disc_id = next(c['id'] for c in gt['categories'] if c['name'] == 'disc')
    ring = result['per_class'][ring_id]
    assert result['per_class'][disc_id]['pq'] == 0.0
    want_ring = (sum(i for i in ious if i > 0.5) /
                 (tp + 0.5 * (n - tp) + 0.5 * (n - tp)))
    assert ring['pq'] == pytest.approx(want_ring)
    assert result['pq'] == pytest.approx(want_ring / 2)


def test_arm_overrides_apply_to_the_experiment(tmp_path):
    from maskconver_tf import registry_imports  # noqa: F401
    from maskconver_tf.serving import export_module
    runner = ablation.Ablation(str(tmp_path), train_steps=40)
    for arm, want in (('off', False), ('on', True)):
        params = export_module.load_params(
            'maskconver_shapes', runner.demo.config_files(runner.stage),
            runner.overrides(arm))
        assert params.task.model.mask_embedding.use_class_embedding is want
        assert params.trainer.train_steps == 40
        assert params.task.train_data.input_path == str(
            tmp_path / 'tfrecords' / 'train*')
