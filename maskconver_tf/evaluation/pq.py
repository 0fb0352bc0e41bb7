"""Official COCO panoptic quality (PQ), panopticapi-exact, numpy only.

Scores a COCO panoptic prediction (JSON + RGB-id PNGs) against a COCO panoptic
ground truth with the rules of panopticapi's `evaluation.py` (commit 7bb46555;
see shared/design/evaluation.md section 2):

- segment id = R + 256 G + 256^2 B, 0 is VOID; categories come from the GT JSON;
  images are paired by `image_id`; GT areas come from the JSON, predicted areas
  from the PNG.
- A GT and a predicted segment of the same category match when IoU > 0.5
  (strict); the union leaves out the prediction's overlap with GT VOID only.
- GT crowd segments are never matched nor FNs; per image and category the last
  crowd segment in `segments_info` is the crowd region of that category.
- An unmatched prediction is ignored (not an FP) when more than half of it lies
  on GT VOID plus the same-category crowd region.
- Per class PQ = sum(IoU) / (TP + FP/2 + FN/2), SQ = sum(IoU) / TP (0 without
  TP), RQ = TP / (TP + FP/2 + FN/2); All / Things / Stuff are plain means over
  the categories with TP + FP + FN > 0.

Our own implementation because hotcoco (a Rust wheel) is kept as an
independent test oracle and panopticapi is unmaintained and not cleanly
pip-installable. Differences from panopticapi, all on inputs where it crashes
or silently misbehaves:
- an empty Things or Stuff group reports n 0 and pq / sq / rq None (panopticapi
  raises ZeroDivisionError, hotcoco reports -1);
- malformed predictions raise `PanopticEvalError` naming the image (id and PNG
  file) and the segment: unknown category, PNG id missing from
  `segments_info` or the reverse, duplicate segment ids, a PNG size
  that differs from the GT, a missing PNG or a GT image without prediction.
The GT is trusted as panopticapi trusts it: GT segments of categories outside
`categories` are not scored, GT PNG ids missing from `segments_info` are
neither VOID nor segments. As upstream, id 0 listed in `segments_info` is an
ordinary segment (its pixels still count as VOID in the GT union and FP rules).

CLI:
  python -m maskconver_tf.evaluation.pq --gt_json J [--gt_dir D] \
      --pred_json PJ [--pred_dir PD] [--json OUT] [--workers N]
"""

import argparse
import json
import multiprocessing
import os
import sys
from typing import Optional

import numpy as np
from PIL import Image

OFFSET = 256 ** 3
VOID = 0
_TP, _FP, _FN, _IOU = range(4)


class PanopticEvalError(ValueError):
    """Bad evaluation input; the message names the image and the segment."""


def rgb2id(rgb):
    """COCO panoptic RGB PNG pixels -> segment ids.

    Args:
      rgb: uint8 [H, W, 3].
    Returns:
      uint32 [H, W], R + 256 G + 256^2 B.
    """
    rgb = np.asarray(rgb, np.uint32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id2rgb(ids):
    """Segment ids -> COCO panoptic RGB pixels.

    Args:
      ids: integer [H, W], values in [0, 256^3).
    Returns:
      uint8 [H, W, 3].
    """
    ids = np.asarray(ids, np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256],
                    axis=-1).astype(np.uint8)


def read_panoptic_png(path, label):
    """Reads a COCO panoptic PNG as uint32 [H, W] segment ids.

    `label` names the image in error messages.
    """
    if not os.path.isfile(path):
        raise PanopticEvalError(f'{label}: PNG file {path} does not exist')
    try:
        with Image.open(path) as im:
            if im.mode in ('RGBA', 'P'):
                im = im.convert('RGB')
            if im.mode != 'RGB':
                raise PanopticEvalError(
                    f'{label}: {path} is a {im.mode} PNG; expected RGB-encoded '
                    'segment ids (id = R + 256 G + 256^2 B)')
            return rgb2id(np.asarray(im))
    except OSError as e:
        raise PanopticEvalError(f'{label}: cannot read {path} ({e})') from None


def _load_json(obj, what):
    """Path or already-loaded dict -> (dict, default PNG folder or None)."""
    if isinstance(obj, dict):
        data, folder, name = obj, None, '<dict>'
    else:
        name = os.fspath(obj)
        with open(name) as f:
            data = json.load(f)
        # panopticapi's default: the PNGs sit in the JSON path minus '.json'.
        folder = name[:-len('.json')] if name.endswith('.json') else None
    keys = ('annotations', 'categories') if what == 'ground truth' else (
        'annotations',)
    for key in keys:
        if key not in data:
            raise PanopticEvalError(f'{what} JSON {name}: no "{key}" key; '
                                    'expected a COCO panoptic JSON')
    return data, folder


def _segments(ann, label, what, cat_index, check_categories):
    """segments_info -> {segment id: info}, checking ids (and categories)."""
    out = {}
    for i, s in enumerate(ann.get('segments_info', [])):
        missing = [k for k in ('id', 'category_id') if k not in s]
        if missing:
            raise PanopticEvalError(f'{label}: {what} segments_info[{i}] lacks '
                                    f'{missing}')
        sid = int(s['id'])
        if sid in out:
            raise PanopticEvalError(f'{label}: {what} segment id {sid} appears '
                                    'twice in segments_info')
        cat = int(s['category_id'])
        if check_categories and cat not in cat_index:
            raise PanopticEvalError(
                f'{label}: {what} segment {sid} has category_id {cat}, which is '
                f'not a ground-truth category (known ids {sorted(cat_index)})')
        if what == 'ground-truth' and 'area' not in s:
            raise PanopticEvalError(f'{label}: ground-truth segment {sid} has '
                                    'no "area"')
        out[sid] = s
    return out


def _evaluate_image(task):
    """Per-image statistics.

    Args:
      task: (label, gt_png, pred_png, gt_segments, pred_segments, num_cats)
        where gt_segments is [(id, category index or -1, area, iscrowd)] in
        segments_info order and pred_segments is {id: category index}.
    Returns:
      float64 [num_cats, 4]: TP, FP, FN, sum of IoU per category index.
    """
    label, gt_png, pred_png, gt_segments, pred_segments, num_cats = task
    gt = read_panoptic_png(gt_png, label)
    pred = read_panoptic_png(pred_png, label)
    if gt.shape != pred.shape:
        raise PanopticEvalError(
            f'{label}: prediction {pred_png} is {pred.shape[0]}x{pred.shape[1]} '
            f'(HxW) but the ground truth is {gt.shape[0]}x{gt.shape[1]}')

    ids, counts = np.unique(pred, return_counts=True)
    pred_area = dict(zip(ids.tolist(), counts.tolist()))
    # Id 0 is VOID unless segments_info lists it; then it is an ordinary
    # segment, as upstream (the old DeepLab golden pair relies on this).
    if VOID not in pred_segments:
        pred_area.pop(VOID, None)
    unlisted = sorted(set(pred_area) - set(pred_segments))
    if unlisted:
        raise PanopticEvalError(
            f'{label}: prediction {pred_png} has segment id(s) {unlisted} that '
            'are not in its segments_info')
    absent = sorted(set(pred_segments) - set(pred_area))
    if absent:
        raise PanopticEvalError(
            f'{label}: segments_info lists segment id(s) {absent} that do not '
            f'appear in the prediction {pred_png}')

    # Joint histogram: one bin per (GT id, predicted id) pair that overlaps.
    joint = gt.astype(np.uint64) * OFFSET + pred
    pairs, inter = np.unique(joint, return_counts=True)
    overlap = dict(zip(zip((pairs // OFFSET).tolist(), (pairs % OFFSET).tolist()),
                       inter.tolist()))

    stats = np.zeros([num_cats, 4], np.float64)
    gt_info = {sid: (cat, area, crowd) for sid, cat, area, crowd in gt_segments}
    gt_matched, pred_matched = set(), set()
    for (g, p), n in overlap.items():
        if g not in gt_info or p not in pred_segments:
            continue
        cat, area, crowd = gt_info[g]
        if crowd or cat != pred_segments[p]:
            continue
        union = pred_area[p] + area - n - overlap.get((VOID, p), 0)
        iou = n / union
        if iou > 0.5:
            stats[cat, _TP] += 1
            stats[cat, _IOU] += iou
            gt_matched.add(g)
            pred_matched.add(p)

    crowd_of = {}
    for sid, cat, _, crowd in gt_segments:
        if sid in gt_matched or cat < 0:
            continue
        if crowd:
            crowd_of[cat] = sid  # a later crowd segment overwrites, as upstream
        else:
            stats[cat, _FN] += 1

    for p, cat in pred_segments.items():
        if p in pred_matched:
            continue
        ignored = overlap.get((VOID, p), 0)
        if cat in crowd_of:
            ignored += overlap.get((crowd_of[cat], p), 0)
        if ignored / pred_area[p] > 0.5:
            continue
        stats[cat, _FP] += 1
    return stats


def _class_metrics(row):
    tp, fp, fn, iou = (float(v) for v in row)
    denom = tp + 0.5 * fp + 0.5 * fn
    return {'pq': iou / denom if denom else 0.0,
            'sq': iou / tp if tp else 0.0,
            'rq': tp / denom if denom else 0.0,
            'tp': int(tp), 'fp': int(fp), 'fn': int(fn), 'iou': iou}


def _group(per_class, cat_ids):
    valid = [per_class[c] for c in cat_ids
             if per_class[c]['tp'] + per_class[c]['fp'] + per_class[c]['fn']]
    if not valid:
        return {'pq': None, 'sq': None, 'rq': None, 'n': 0}
    means = {k: float(np.mean([m[k] for m in valid])) for k in ('pq', 'sq', 'rq')}
    return {**means, 'n': len(valid)}


def pq_compute(gt_json, pred_json, gt_folder=None, pred_folder=None,
               num_workers=1) -> dict:
    """Panoptic quality of a COCO panoptic prediction, panopticapi rules.

    Args:
      gt_json, pred_json: COCO panoptic JSON paths or already-loaded dicts.
      gt_folder, pred_folder: PNG folders; default to the JSON path without
        '.json' (required when the JSON is given as a dict).
      num_workers: processes reading and scoring images (1 = in process).
        Results do not depend on it: images are summed in GT order. Each
        worker is spawned and imports the package (TensorFlow included), so
        this pays off only on large sets such as COCO val.
    Returns:
      {'All' | 'Things' | 'Stuff': {'pq', 'sq', 'rq' (fractions, None when
      n == 0), 'n'}, 'per_class': {category id: {'pq', 'sq', 'rq', 'tp', 'fp',
      'fn', 'iou'}}} with every GT category in `per_class`.
    Raises:
      PanopticEvalError: malformed prediction or input, naming image and
        segment.
    """
    gt, gt_default = _load_json(gt_json, 'ground truth')
    pred, pred_default = _load_json(pred_json, 'prediction')
    gt_folder = gt_folder if gt_folder is not None else gt_default
    pred_folder = pred_folder if pred_folder is not None else pred_default
    if gt_folder is None or pred_folder is None:
        raise PanopticEvalError('gt_folder and pred_folder are required when '
                                'the JSON is a dict or its path does not end '
                                'in .json')

    categories = gt['categories']
    cat_ids = [int(c['id']) for c in categories]
    cat_index = {c: i for i, c in enumerate(cat_ids)}
    pred_by_image = {}
    for ann in pred['annotations']:
        image_id = ann['image_id']
        if image_id in pred_by_image:
            raise PanopticEvalError(f'image {image_id}: the prediction JSON has '
                                    'two annotations for it')
        pred_by_image[image_id] = ann

    # Validate every JSON before reading any PNG, so bad input fails fast.
    tasks = []
    for ann in gt['annotations']:
        image_id = ann['image_id']
        label = f'image {image_id} ({ann["file_name"]})'
        if image_id not in pred_by_image:
            raise PanopticEvalError(f'{label}: no prediction for this image in '
                                    'the prediction JSON')
        pann = pred_by_image[image_id]
        gt_segs = _segments(ann, label, 'ground-truth', cat_index, False)
        pred_segs = _segments(pann, label, 'predicted', cat_index, True)
        tasks.append((
            label,
            os.path.join(gt_folder, ann['file_name']),
            os.path.join(pred_folder, pann['file_name']),
            [(sid, cat_index.get(int(s['category_id']), -1), int(s['area']),
              bool(s.get('iscrowd', 0))) for sid, s in gt_segs.items()],
            {sid: cat_index[int(s['category_id'])]
             for sid, s in pred_segs.items()},
            len(cat_ids)))

    stats = np.zeros([len(cat_ids), 4], np.float64)
    if num_workers > 1 and len(tasks) > 1:
        # spawn: the parent may hold TensorFlow threads, which fork would copy.
        ctx = multiprocessing.get_context('spawn')
        with ctx.Pool(min(num_workers, len(tasks))) as pool:
            for s in pool.imap(_evaluate_image, tasks, chunksize=8):
                stats += s
    else:
        for task in tasks:
            stats += _evaluate_image(task)

    per_class = {c: _class_metrics(stats[i]) for i, c in enumerate(cat_ids)}
    things = [int(c['id']) for c in categories if c['isthing']]
    stuff = [int(c['id']) for c in categories if not c['isthing']]
    return {'All': _group(per_class, cat_ids), 'Things': _group(per_class, things),
            'Stuff': _group(per_class, stuff), 'per_class': per_class}


def _pct(v):
    return '      -' if v is None else f'{100 * v:7.3f}'


def format_table(results: dict, categories: Optional[list] = None) -> str:
    """Printable table (percent): All / Things / Stuff, then per class.

    Args:
      results: `pq_compute` output (per_class keys may be int or str).
      categories: COCO categories (id, name, isthing) for names; optional.
    """
    lines = [f'{"":10s}|      PQ      SQ      RQ     N', '-' * 41]
    for group in ('All', 'Things', 'Stuff'):
        r = results[group]
        lines.append(f'{group:10s}| {_pct(r["pq"])} {_pct(r["sq"])} '
                     f'{_pct(r["rq"])} {r["n"]:5d}')
    names = {int(c['id']): (c['name'], 'thing' if c['isthing'] else 'stuff')
             for c in categories or []}
    lines += ['', f'{"id":>4s} {"category":24s} {"kind":5s} |      PQ      SQ'
              '      RQ |    TP    FP    FN', '-' * 75]
    for cid, m in sorted(results['per_class'].items(), key=lambda kv: int(kv[0])):
        name, kind = names.get(int(cid), ('', ''))
        scored = m['tp'] + m['fp'] + m['fn'] > 0
        pq, sq, rq = (m[k] if scored else None for k in ('pq', 'sq', 'rq'))
        lines.append(f'{int(cid):4d} {name[:24]:24s} {kind:5s} | {_pct(pq)} '
                     f'{_pct(sq)} {_pct(rq)} | {m["tp"]:5d} {m["fp"]:5d} '
                     f'{m["fn"]:5d}')
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description='COCO panoptic quality with the official (panopticapi) '
                    'rules.')
    parser.add_argument('--gt_json', required=True)
    parser.add_argument('--gt_dir', help='GT PNG folder (default: gt_json '
                        'without .json)')
    parser.add_argument('--pred_json', required=True)
    parser.add_argument('--pred_dir', help='prediction PNG folder (default: '
                        'pred_json without .json)')
    parser.add_argument('--json', help='write the results dict here')
    parser.add_argument('--workers', type=int, default=1,
                        help='processes for reading and scoring images')
    args = parser.parse_args(argv)
    try:
        with open(args.gt_json) as f:
            gt = json.load(f)
        results = pq_compute(args.gt_json, args.pred_json, args.gt_dir,
                             args.pred_dir, num_workers=args.workers)
    except (PanopticEvalError, OSError, ValueError, KeyError) as e:
        message = ' '.join(str(e).split())
        print(f'pq: error: {type(e).__name__}: {message}', file=sys.stderr)
        return 2
    print(format_table(results, gt['categories']))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
