"""Official COCO panoptic quality: golden cases, hotcoco parity, bad input,
CLI, and agreement with Model Garden's in-loop evaluator on crowd-free data.

Golden numbers: shared/design/evaluation.md section 4 and the fixture READMEs.
"""

import json
import os
import shutil
import subprocess
import sys

import hotcoco.panoptic
import numpy as np
import pytest
from PIL import Image

from maskconver_tf.data.descriptor import DatasetDescriptor
from maskconver_tf.evaluation import pq
from maskconver_tf.evaluation.panoptic_writer import (
    PanopticPredictionWriter, decode_panoptic)

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
GOLDEN = os.path.join(FIXTURES, 'pq_golden')
COCO = os.path.join(FIXTURES, 'coco_panoptic_sample')
GROUPS = ('All', 'Things', 'Stuff')

# ---------------------------------------------------------------------------
# The "tiny" case (evaluation.md 4a): two 64x64 images, ops painted in order.
# An op is (rows, cols, category, instance, iscrowd); category 0 is VOID.
S = slice
ALL = S(None)
TINY_CATEGORIES = [
    {'id': 1, 'name': 'disc', 'isthing': 1}, {'id': 2, 'name': 'box', 'isthing': 1},
    {'id': 10, 'name': 'sky', 'isthing': 0}, {'id': 11, 'name': 'grass', 'isthing': 0},
    {'id': 12, 'name': 'water', 'isthing': 0}]
TINY_GT = {
    1: [(S(0, 32), ALL, 10, 0, 0), (S(32, 64), ALL, 11, 0, 0),
        (S(36, 52), S(4, 20), 1, 1, 0), (S(36, 48), S(40, 52), 1, 2, 0),
        (S(4, 20), S(40, 60), 2, 1, 1), (S(56, 64), S(0, 16), 0, 0, 0)],
    2: [(S(0, 40), ALL, 10, 0, 0), (S(40, 64), ALL, 11, 0, 0),
        (S(10, 30), S(10, 30), 2, 1, 0), (S(44, 60), S(30, 46), 2, 2, 0),
        (S(44, 56), S(50, 62), 1, 1, 0)],
}
TINY_PRED = {
    1: [(S(0, 32), ALL, 10, 0, 0), (S(32, 64), ALL, 11, 0, 0),
        (S(38, 54), S(4, 20), 1, 1, 0), (S(6, 18), S(42, 58), 2, 1, 0),
        (S(56, 64), S(0, 10), 1, 2, 0), (S(56, 64), S(10, 22), 1, 3, 0)],
    2: [(S(0, 40), ALL, 10, 0, 0), (S(40, 64), ALL, 11, 0, 0),
        (S(10, 30), S(10, 30), 1, 1, 0), (S(44, 60), S(30, 38), 0, 0, 0),
        (S(44, 60), S(38, 46), 2, 1, 0), (S(44, 56), S(50, 62), 1, 2, 0),
        (S(60, 64), S(0, 8), 12, 0, 0)],
}
# Per class (panopticapi-exact): tp, fp, fn, sum IoU, pq, sq, rq.
TINY_PER_CLASS = {
    1: (2, 2, 1, 1.777778, 0.507937, 0.888889, 0.571429),
    2: (0, 1, 2, 0.0, 0.0, 0.0, 0.0),
    10: (2, 0, 0, 1.931034, 0.965517, 0.965517, 1.0),
    11: (2, 0, 0, 1.820888, 0.910444, 0.910444, 1.0),
    12: (0, 1, 0, 0.0, 0.0, 0.0, 0.0),
}


def _paint(ops, crowd='crowd'):
    """ops -> (segment ids int64 [64, 64], segments_info, category / instance
    masks int32 [64, 64]). crowd: 'crowd' (iscrowd 1), 'instance' (an
    ordinary segment) or 'void'."""
    ids = np.zeros([64, 64], np.int64)
    keys = {}
    for rows, cols, cat, inst, iscrowd in ops:
        if cat == 0 or (iscrowd and crowd == 'void'):
            ids[rows, cols] = 0
            continue
        sid = keys.setdefault((cat, inst), (len(keys) + 1, iscrowd))[0]
        ids[rows, cols] = sid
    segments, category, instance = [], np.zeros_like(ids), np.zeros_like(ids)
    for (cat, inst), (sid, iscrowd) in keys.items():
        mask = ids == sid
        if mask.any():
            segments.append({'id': sid, 'category_id': cat, 'area': int(mask.sum()),
                             'iscrowd': int(iscrowd and crowd == 'crowd')})
            category[mask], instance[mask] = cat, inst
    return ids, segments, category.astype(np.int32), instance.astype(np.int32)


def _write_coco(directory, name, images, categories):
    """images: {image_id: (ids, segments_info)} -> (json path, png dir)."""
    png_dir = os.path.join(directory, name)
    os.makedirs(png_dir, exist_ok=True)
    annotations = []
    for image_id, (ids, segments) in images.items():
        file_name = f'{image_id:04d}.png'
        Image.fromarray(pq.id2rgb(ids)).save(os.path.join(png_dir, file_name))
        annotations.append({'image_id': image_id, 'file_name': file_name,
                            'segments_info': segments})
    data = {'images': [{'id': i, 'file_name': f'{i:04d}.jpg',
                        'height': int(v[0].shape[0]), 'width': int(v[0].shape[1])}
                       for i, v in images.items()],
            'annotations': annotations, 'categories': categories}
    path = png_dir + '.json'
    with open(path, 'w') as f:
        json.dump(data, f)
    return path, png_dir


def _tiny_files(directory, crowd='crowd', categories=TINY_CATEGORIES):
    gt = {i: _paint(ops, crowd)[:2] for i, ops in TINY_GT.items()}
    pred = {i: _paint(ops)[:2] for i, ops in TINY_PRED.items()}
    return (*_write_coco(directory, 'gt', gt, categories),
            *_write_coco(directory, 'pred', pred, categories))


def _check_range(results):
    for group in GROUPS:
        for k in ('pq', 'sq', 'rq'):
            v = results[group][k]
            assert v is None or 0.0 <= 100 * v <= 100.0
    for m in results['per_class'].values():
        assert 0.0 <= 100 * m['pq'] <= 100.0


def _assert_hotcoco_parity(files, ours, capsys, tol=1e-9):
    theirs = hotcoco.panoptic.pq_compute(*files)
    capsys.readouterr()  # hotcoco prints its own table
    for group in GROUPS:
        assert ours[group]['n'] == theirs[group]['n']
        for k in ('pq', 'sq', 'rq'):
            assert ours[group][k] == pytest.approx(theirs[group][k], abs=tol), k
    for cid, m in ours['per_class'].items():
        t = theirs['per_class'][cid]
        assert (m['tp'], m['fp'], m['fn']) == (t['tp'], t['fp'], t['fn']), cid
        if m['tp'] + m['fp'] + m['fn']:  # absent classes: hotcoco -1, upstream 0
            for k in ('pq', 'sq', 'rq', 'iou'):
                assert m[k] == pytest.approx(t[k], abs=tol), (cid, k)


def _golden_files():
    return (os.path.join(GOLDEN, 'coco_gt.json'), os.path.join(GOLDEN, 'coco_gt'),
            os.path.join(GOLDEN, 'coco_pred.json'), os.path.join(GOLDEN, 'coco_pred'))


def _pq(files, **kwargs):
    gt_json, gt_dir, pred_json, pred_dir = files
    results = pq.pq_compute(gt_json, pred_json, gt_dir, pred_dir, **kwargs)
    _check_range(results)
    return results


def _hotcoco_args(files):
    gt_json, gt_dir, pred_json, pred_dir = files
    return gt_json, pred_json, gt_dir, pred_dir


# ---------------------------------------------------------------------------
# Golden cases.

def test_tiny_golden(tmp_path, capsys):
    files = _tiny_files(str(tmp_path))
    r = _pq(files)
    assert 100 * r['All']['pq'] == pytest.approx(47.678, abs=5e-4)
    assert 100 * r['All']['sq'] == pytest.approx(55.297, abs=5e-4)
    assert 100 * r['All']['rq'] == pytest.approx(51.429, abs=5e-4)
    assert [100 * r['Things'][k] for k in ('pq', 'sq', 'rq')] == pytest.approx(
        [25.397, 44.444, 28.571], abs=5e-4)
    assert [100 * r['Stuff'][k] for k in ('pq', 'sq', 'rq')] == pytest.approx(
        [62.532, 62.532, 66.667], abs=5e-4)
    assert [r[g]['n'] for g in GROUPS] == [5, 2, 3]
    for cid, (tp, fp, fn, iou, pq_, sq, rq) in TINY_PER_CLASS.items():
        m = r['per_class'][cid]
        assert (m['tp'], m['fp'], m['fn']) == (tp, fp, fn), cid
        assert [m['iou'], m['pq'], m['sq'], m['rq']] == pytest.approx(
            [iou, pq_, sq, rq], abs=1e-6), cid
    # Exact fractions behind the table: 7/9 + 1 for disc, sky's crowd overlap.
    assert r['per_class'][1]['iou'] == pytest.approx(224 / 288 + 1, abs=1e-12)
    assert r['per_class'][10]['iou'] == pytest.approx(1728 / 1856 + 1, abs=1e-12)
    _assert_hotcoco_parity(_hotcoco_args(files), r, capsys)


def test_old_deeplab_golden_pair(capsys):
    r = _pq(_golden_files())
    expected = {'All': (0.674049, 0.683439, 0.820513, 6),
                'Things': (0.576968, 0.591053, 0.730769, 4),
                'Stuff': (0.868211, 0.868211, 1.0, 2)}
    for group, (pq_, sq, rq, n) in expected.items():
        assert [r[group][k] for k in ('pq', 'sq', 'rq')] == pytest.approx(
            [pq_, sq, rq], abs=1e-6)
        assert r[group]['n'] == n
    per_class = {1: (12, 0, 2, 8.789138, 0.676088), 2: (0, 0, 1, 0.0, 0.0),
                 3: (1, 0, 0, 0.745353, 0.745353), 4: (1, 0, 0, 0.857678, 0.857678),
                 5: (1, 0, 0, 0.991069, 0.991069), 6: (1, 0, 0, 0.774105, 0.774105)}
    for cid, (tp, fp, fn, iou, pq_) in per_class.items():
        m = r['per_class'][cid]
        assert (m['tp'], m['fp'], m['fn']) == (tp, fp, fn)
        assert [m['iou'], m['pq']] == pytest.approx([iou, pq_], abs=1e-6)
    _assert_hotcoco_parity(_hotcoco_args(_golden_files()), r, capsys)


def test_loaded_dicts_and_workers_give_the_same_result():
    gt_json, gt_dir, pred_json, pred_dir = _golden_files()
    expected = _pq(_golden_files())
    with open(gt_json) as f, open(pred_json) as g:
        gt, pred = json.load(f), json.load(g)
    assert pq.pq_compute(gt, pred, gt_dir, pred_dir) == expected
    # Default folders: the JSON path without '.json'.
    assert pq.pq_compute(gt_json, pred_json) == expected
    assert pq.pq_compute(gt_json, pred_json, num_workers=2) == expected
    with pytest.raises(pq.PanopticEvalError, match='gt_folder and pred_folder'):
        pq.pq_compute(gt, pred)


def test_coco_sample_against_itself(capsys):
    gt_json = os.path.join(COCO, 'panoptic_examples.json')
    gt_dir = os.path.join(COCO, 'panoptic_examples')
    files = (gt_json, gt_dir, gt_json, gt_dir)
    r = _pq(files)
    for group, n in zip(GROUPS, (8, 4, 4)):
        assert r[group] == {'pq': 1.0, 'sq': 1.0, 'rq': 1.0, 'n': n}
    _assert_hotcoco_parity(_hotcoco_args(files), r, capsys)


def _coco_perturbed(directory):
    """A coco2pert-style deterministic perturbation of the COCO sample (4c):
    per image, non-crowd thing segment k (JSON order) is dropped to VOID if
    k % 3 == 0, shifted right by 6 px if k % 3 == 1 (vacated pixels VOID),
    else kept; the first stuff segment is relabelled to stuff 199 / 200; crowd
    segments become plain segments; a car box (category 3) is painted last."""
    with open(os.path.join(COCO, 'panoptic_examples.json')) as f:
        gt = json.load(f)
    isthing = {c['id']: c['isthing'] for c in gt['categories']}
    images = {}
    for n, ann in enumerate(gt['annotations']):
        ids = pq.read_panoptic_png(
            os.path.join(COCO, 'panoptic_examples', ann['file_name']), 'gt')
        pred = ids.astype(np.int64)
        segments = []
        k = 0
        relabelled = False
        for s in ann['segments_info']:
            crowd = s['iscrowd']
            s = dict(s, iscrowd=0)
            segments.append(s)
            if isthing[s['category_id']] and not crowd:
                mask = ids == s['id']
                if k % 3 == 0:
                    pred[mask] = 0
                elif k % 3 == 1:
                    pred[mask] = 0
                    shifted = np.zeros_like(mask)
                    shifted[:, 6:] = mask[:, :-6]
                    pred[shifted] = s['id']
                k += 1
            elif not isthing[s['category_id']] and not relabelled:
                s['category_id'] = 199 + n
                relabelled = True
        car = int(ids.max()) + 1
        pred[20:80, 20:120] = car
        segments.append({'id': car, 'category_id': 3, 'iscrowd': 0})
        present = set(np.unique(pred).tolist())
        segments = [s for s in segments if s['id'] in present]
        for s in segments:
            s['area'] = int((pred == s['id']).sum())
        images[ann['image_id']] = (pred, segments)
    pred_json, pred_dir = _write_coco(directory, 'pert', images, gt['categories'])
    return (os.path.join(COCO, 'panoptic_examples.json'),
            os.path.join(COCO, 'panoptic_examples'), pred_json, pred_dir)


def test_coco_perturbation_matches_hotcoco(tmp_path, capsys):
    files = _coco_perturbed(str(tmp_path))
    r = _pq(files)
    assert 0.2 < r['All']['pq'] < 0.8  # a real perturbation, not identity
    assert r['per_class'][3]['fp'] >= 1  # the added car box
    _assert_hotcoco_parity(_hotcoco_args(files), r, capsys)


def test_empty_things_group_reports_none(tmp_path, capsys):
    # Only the stuff categories scored: Things is empty (panopticapi divides
    # by zero, hotcoco reports -1, we report n 0 and None).
    stuff_only = [c for c in TINY_CATEGORIES if not c['isthing']]
    files = _tiny_files(str(tmp_path), categories=stuff_only)
    gt_json, gt_dir, pred_json, pred_dir = files
    with open(pred_json) as f:
        pred = json.load(f)
    for ann in pred['annotations']:  # drop the predicted things too
        kept = [s for s in ann['segments_info'] if s['category_id'] >= 10]
        path = os.path.join(pred_dir, ann['file_name'])
        ids = pq.rgb2id(np.asarray(Image.open(path)))
        ids[~np.isin(ids, [s['id'] for s in kept])] = 0
        Image.fromarray(pq.id2rgb(ids)).save(path)
        ann['segments_info'] = kept
    with open(pred_json, 'w') as f:
        json.dump(pred, f)
    r = _pq(files)
    assert r['Things'] == {'pq': None, 'sq': None, 'rq': None, 'n': 0}
    assert r['Stuff']['n'] == 3 and r['All'] == dict(r['Stuff'])
    theirs = hotcoco.panoptic.pq_compute(*_hotcoco_args(files))
    capsys.readouterr()
    assert theirs['Things']['pq'] == -1.0
    assert r['Stuff']['pq'] == pytest.approx(theirs['Stuff']['pq'], abs=1e-9)
    assert '-' in pq.format_table(r).splitlines()[3]


def test_format_table():
    r = _pq(_golden_files())
    with open(_golden_files()[0]) as f:
        table = pq.format_table(r, json.load(f)['categories'])
    lines = table.splitlines()
    assert lines[2].split() == ['All', '|', '67.405', '68.344', '82.051', '6']
    assert lines[3].split() == ['Things', '|', '57.697', '59.105', '73.077', '4']
    assert lines[4].split() == ['Stuff', '|', '86.821', '86.821', '100.000', '2']
    assert any(line.split()[:3] == ['1', 'person', 'thing'] for line in lines)


# ---------------------------------------------------------------------------
# Bad predictions: clear errors naming image and segment.

def _mutate_pred(files, image_id, fn):
    with open(files[2]) as f:
        pred = json.load(f)
    ann = next(a for a in pred['annotations'] if a['image_id'] == image_id)
    fn(pred, ann)
    with open(files[2], 'w') as f:
        json.dump(pred, f)


def _expect_error(files, *fragments):
    with pytest.raises(pq.PanopticEvalError) as e:
        _pq(files)
    message = str(e.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert '\n' not in message


def test_error_unknown_category(tmp_path):
    files = _tiny_files(str(tmp_path))
    _mutate_pred(files, 2, lambda p, a: a['segments_info'][2].update(category_id=99))
    _expect_error(files, 'image 2 (0002.png)', 'segment 3', 'category_id 99')


def test_error_png_id_not_in_segments_info(tmp_path):
    files = _tiny_files(str(tmp_path))
    _mutate_pred(files, 1, lambda p, a: a['segments_info'].pop(3))
    _expect_error(files, 'image 1 (0001.png)', 'segment id(s) [4]',
                  'not in its segments_info')


def test_error_segments_info_id_missing_from_png(tmp_path):
    files = _tiny_files(str(tmp_path))
    _mutate_pred(files, 1, lambda p, a: a['segments_info'].append(
        {'id': 777, 'category_id': 1, 'iscrowd': 0}))
    _expect_error(files, 'image 1 (0001.png)', '[777]', 'do not appear')


def test_error_duplicate_segment_id(tmp_path):
    files = _tiny_files(str(tmp_path))
    _mutate_pred(files, 1, lambda p, a: a['segments_info'].append(
        dict(a['segments_info'][0])))
    _expect_error(files, 'image 1 (0001.png)', 'segment id 1 appears twice')


def test_error_prediction_size_differs(tmp_path):
    files = _tiny_files(str(tmp_path))
    path = os.path.join(files[3], '0002.png')
    Image.fromarray(np.asarray(Image.open(path))[:32]).save(path)
    _expect_error(files, 'image 2 (0002.png)', '32x64', '64x64')


def test_error_image_without_prediction(tmp_path):
    files = _tiny_files(str(tmp_path))
    _mutate_pred(files, 2, lambda p, a: p['annotations'].remove(a))
    _expect_error(files, 'image 2 (0002.png)', 'no prediction')


def test_error_missing_png(tmp_path):
    files = _tiny_files(str(tmp_path))
    os.remove(os.path.join(files[3], '0001.png'))
    _expect_error(files, 'image 1 (0001.png)', 'does not exist',
                  os.path.join(files[3], '0001.png'))


# ---------------------------------------------------------------------------
# CLI.

def _run_cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    return subprocess.run([sys.executable, '-m', 'maskconver_tf.evaluation.pq', *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_golden_pair(tmp_path):
    gt_json, gt_dir, pred_json, pred_dir = _golden_files()
    out = tmp_path / 'pq.json'
    proc = _run_cli('--gt_json', gt_json, '--gt_dir', gt_dir, '--pred_json', pred_json,
                    '--pred_dir', pred_dir, '--json', str(out))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[2].split() == ['All', '|', '67.405', '68.344', '82.051', '6']
    assert any(line.split()[:2] == ['6', 'cat'] for line in lines)
    saved = json.loads(out.read_text())
    assert saved['All']['pq'] == pytest.approx(0.674049, abs=1e-6)
    assert saved['Things']['pq'] == pytest.approx(0.576968, abs=1e-6)
    assert saved['Stuff']['pq'] == pytest.approx(0.868211, abs=1e-6)
    assert saved['per_class']['1']['tp'] == 12



def test_cli_bad_input_one_line_error(tmp_path, capsys):
    gt_json, _, pred_json, pred_dir = _golden_files()
    bad_dir = tmp_path / 'pred'
    shutil.copytree(pred_dir, bad_dir)
    os.remove(bad_dir / 'cat.png')
    code = pq.main(['--gt_json', gt_json, '--pred_json', pred_json,
                    '--pred_dir', str(bad_dir)])
    captured = capsys.readouterr()
    assert code != 0 and captured.out == ''
    assert captured.err.count('\n') == 1
    assert captured.err.startswith('pq: error: PanopticEvalError: image 2 (cat.png)')
    assert pq.main(['--gt_json', str(tmp_path / 'none.json'),
                    '--pred_json', pred_json]) != 0
    assert 'none.json' in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Model Garden's in-loop evaluator (PanopticQualityEvaluator) vs ours.

def _mg_evaluate(pairs, categories):
    """pairs: [(gt (category, instance), pred (category, instance))] of int32
    [H, W] masks -> MG's All / Things / Stuff PQ (fractions)."""
    import tensorflow as tf
    from official.vision.evaluation.panoptic_quality_evaluator import (
        PanopticQualityEvaluator)
    max_id = max(c['id'] for c in categories)
    is_thing = np.zeros([max_id + 1], bool)
    is_thing[[c['id'] for c in categories if c['isthing']]] = True
    evaluator = PanopticQualityEvaluator(
        num_categories=max_id + 1, ignored_label=0, max_instances_per_category=256,
        offset=256 ** 3, is_thing=is_thing, rescale_predictions=False)
    for (gc, gi), (pc, pi) in pairs:
        def batch(m):
            return tf.constant(m[None])
        evaluator.update_state({'category_mask': batch(gc), 'instance_mask': batch(gi)},
                               {'category_mask': batch(pc), 'instance_mask': batch(pi)})
    r = evaluator.result()
    return {g: float(r[f'{g}_pq']) for g in GROUPS}


def _ours_from_masks(directory, pairs, categories):
    """Writes GT and prediction masks with the panoptic writer, scores them."""
    descriptor = DatasetDescriptor.from_categories(categories)
    out = {}
    for role, index in (('gt', 0), ('pred', 1)):
        with PanopticPredictionWriter(os.path.join(directory, role), descriptor) as w:
            for image_id, pair in enumerate(pairs, 1):
                w.add(image_id, f'{image_id:04d}.jpg', *pair[index])
        out[role] = w
    r = pq.pq_compute(out['gt'].json_path, out['pred'].json_path,
                      out['gt'].png_dir, out['pred'].png_dir)
    _check_range(r)
    return {g: r[g]['pq'] for g in GROUPS}


def _tiny_pairs(crowd):
    return [(_paint(TINY_GT[i], crowd)[2:], _paint(TINY_PRED[i])[2:]) for i in (1, 2)]


# MG divides 0 / 0 for absent classes before masking them out.
MG_WARNING = pytest.mark.filterwarnings('ignore:invalid value encountered in divide')


@MG_WARNING
def test_model_garden_agrees_on_crowd_free_tiny(tmp_path):
    # Crowd -> void makes the data crowd-free: both must give 4a's MG /
    # deeplab2 row, which panopticapi rules also give on this data.
    pairs = _tiny_pairs('void')
    mg = _mg_evaluate(pairs, TINY_CATEGORIES)
    ours = _ours_from_masks(str(tmp_path), pairs, TINY_CATEGORIES)
    assert [ours[g] for g in GROUPS] == pytest.approx([mg[g] for g in GROUPS], abs=1e-6)
    assert [100 * mg[g] for g in GROUPS] == pytest.approx([48.368, 25.397, 63.681],
                                                          abs=5e-4)


@MG_WARNING
def test_model_garden_agrees_on_crowd_free_golden_pair(tmp_path):
    # The old DeepLab pair decoded to category / instance masks with its one
    # crowd GT segment turned into void, then fed to both evaluators.
    with open(os.path.join(GOLDEN, 'coco_gt.json')) as f:
        gt = json.load(f)
    with open(os.path.join(GOLDEN, 'coco_pred.json')) as f:
        pred = json.load(f)
    descriptor = DatasetDescriptor.from_categories(gt['categories'])
    pred_by_image = {a['image_id']: a for a in pred['annotations']}
    pairs = []
    for ann in gt['annotations']:
        pann = pred_by_image[ann['image_id']]
        gt_ids = pq.read_panoptic_png(os.path.join(GOLDEN, 'coco_gt', ann['file_name']),
                                      'gt')
        pred_ids = pq.read_panoptic_png(
            os.path.join(GOLDEN, 'coco_pred', pann['file_name']), 'pred')
        crowd_free = [s for s in ann['segments_info'] if not s['iscrowd']]
        pairs.append((decode_panoptic(gt_ids, crowd_free, descriptor),
                      decode_panoptic(pred_ids, pann['segments_info'], descriptor)))
    assert sum(s['iscrowd'] for a in gt['annotations'] for s in a['segments_info']) == 1
    mg = _mg_evaluate(pairs, gt['categories'])
    ours = _ours_from_masks(str(tmp_path), pairs, gt['categories'])
    assert [ours[g] for g in GROUPS] == pytest.approx([mg[g] for g in GROUPS], abs=1e-6)


@MG_WARNING
def test_model_garden_differs_on_tiny_with_crowd(tmp_path):
    # Documents 4a: MG has no per-class crowd. With the crowd box written as
    # an ordinary instance (MG TFRecord default) it gets 52.478; official
    # rules on the same data with the crowd flag give 47.678.
    mg = _mg_evaluate(_tiny_pairs('instance'), TINY_CATEGORIES)
    assert [100 * mg[g] for g in GROUPS] == pytest.approx([52.478, 37.397, 62.532],
                                                          abs=5e-4)
    official = _pq(_tiny_files(str(tmp_path)))
    assert 100 * official['All']['pq'] == pytest.approx(47.678, abs=5e-4)
