r"""What limits things PQ: the centers (detection) or the masks?

Example:
  python benchmarks/recall_diagnosis.py --checkpoint_path demo_output/model \
    --data_dir demo_output/tfrecords [--record]

The config is the params.yaml next to the checkpoint (as trained), then
--params_override.

On the validation split of a trained `maskconver_shapes` checkpoint, per
ground-truth segment (thing and stuff separately):
- center found: its class heatmap has a peak (3x3 max-pool equality, the
  proposal rule) with sigmoid score above --score within one cell of the
  ground-truth center; also whether that peak makes the top K;
- mask IoU with teacher forcing: the model's mask for the ground-truth center
  and class (as in training), sigmoid > 0.5 at the mask target stride,
  against the ground-truth mask; the share with IoU > 0.5 is the share that
  would match if its center were found and no other mask took its pixels;
- the resolution ceiling: the ground-truth mask averaged down to the mask
  logits' grid and resized back the same way (bilinear, > 0.5), against
  itself: the best IoU a mask at that stride can reach.
A low center recall with good teacher-forced masks points at the heatmap
(targets, stride, steps); poor masks under a high ceiling at the mask
branch (capacity, steps); a low ceiling at the stride.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from maskconver_tf import inference  # noqa: E402
from maskconver_tf.modeling.layers import post_processing  # noqa: E402
from maskconver_tf.tasks import maskconver as maskconver_task  # noqa: E402

EXPERIMENT = 'maskconver_shapes'


def _iou(a, b):
    union = np.logical_or(a, b).sum()
    return np.logical_and(a, b).sum() / union if union else 0.0


def diagnose(task, model, dataset, score):
    """Per-segment rows: (is_thing, center found, in top K, mask IoU,
    resolution-ceiling IoU)."""
    rows = []
    rule = model.proposal_generator.get_config()
    for images, labels in dataset:
        heatmaps, _, _ = model.dense_outputs(images, training=False)
        peaks = post_processing.peak_scores(
            heatmaps, rule['peak_kernel_size'], rule['peak_error']).numpy()
        b, h, w, c = peaks.shape
        kth = np.sort(peaks.reshape(b, -1), axis=1)[:, -rule['max_proposals']]
        forced = model(images, center_indices=labels['center_indices'],
                       classes=labels['classes'], training=False)
        masks = labels['masks'].numpy() > 0.5
        grid = forced['mask_logits'].shape[1:3]
        logits = tf.image.resize(tf.cast(forced['mask_logits'], tf.float32),
                                 masks.shape[1:3], method='bilinear').numpy()
        ceiling = tf.image.resize(tf.image.resize(
            tf.cast(masks, tf.float32), grid, method='area'),
            masks.shape[1:3], method='bilinear').numpy() > 0.5
        weights = labels['mask_weights'].numpy()
        classes = labels['classes'].numpy()
        centers = labels['center_indices'].numpy()
        for i in range(b):
            for k in np.nonzero(weights[i] > 0)[0]:
                cls, (y, x) = int(classes[i, k]), centers[i, k]
                window = peaks[i, max(0, y - 1):y + 2, max(0, x - 1):x + 2,
                               cls]
                found = window.max() > score
                top_k = found and window.max() >= kth[i]
                gt = masks[i, :, :, k]
                rows.append((bool(task.descriptor.is_thing_channel[cls]),
                             found, top_k, _iou(logits[i, :, :, k] > 0, gt),
                             _iou(ceiling[i, :, :, k], gt)))
    return rows


def summarize(rows):
    """{'things'|'stuff': dict of counts and rates}."""
    out = {}
    for name, thing in (('things', True), ('stuff', False)):
        sel = [r for r in rows if r[0] == thing]
        if not sel:
            continue
        found = np.array([r[1] for r in sel])
        top_k = np.array([r[2] for r in sel])
        iou = np.array([r[3] for r in sel])
        ceiling = np.array([r[4] for r in sel])
        out[name] = {'segments': len(sel),
                     'center_recall': float(found.mean()),
                     'center_recall_top_k': float(top_k.mean()),
                     'mask_iou_mean': float(iou.mean()),
                     'mask_iou_over_0.5': float((iou > 0.5).mean()),
                     'mask_iou_over_0.5_if_found': float(
                         (iou[found] > 0.5).mean()) if found.any() else 0.0,
                     'ceiling_iou_mean': float(ceiling.mean()),
                     'ceiling_iou_over_0.5': float((ceiling > 0.5).mean())}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint_path', required=True)
    parser.add_argument('--data_dir', required=True,
                        help='folder with the val*.tfrecord files')
    parser.add_argument('--params_override', default='',
                        help='applied after the params.yaml next to the '
                        'checkpoint')
    parser.add_argument('--score', type=float, default=0.1,
                        help='a center counts as found above this score')
    parser.add_argument('--record', action='store_true')
    args = parser.parse_args(argv)
    override = f'task.validation_data.input_path={args.data_dir}/val*'
    if args.params_override:
        override += ',' + args.params_override
    predictor = inference.load_predictor(args.checkpoint_path, EXPERIMENT,
                                         params_override=override)
    params, model = predictor.params, predictor.model
    task = maskconver_task.MaskConverTask(params.task)
    dataset = task.build_inputs(params.task.validation_data)
    rows = diagnose(task, model, dataset, args.score)
    result = summarize(rows)
    lines = ['| segments | count | center found (score > '
             f'{args.score}) | found and in top K | teacher-forced mask IoU '
             '(mean) | IoU > 0.5 | IoU > 0.5 among found | resolution ceiling '
             'IoU (mean) | ceiling IoU > 0.5 |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for name, r in result.items():
        lines.append(
            f'| {name} | {r["segments"]} | {100 * r["center_recall"]:.1f}% | '
            f'{100 * r["center_recall_top_k"]:.1f}% | '
            f'{r["mask_iou_mean"]:.3f} | {100 * r["mask_iou_over_0.5"]:.1f}% '
            f'| {100 * r["mask_iou_over_0.5_if_found"]:.1f}% | '
            f'{r["ceiling_iou_mean"]:.3f} | '
            f'{100 * r["ceiling_iou_over_0.5"]:.1f}% |')
    print('\n'.join(lines))
    if args.record:
        from benchmarks import results_io
        results_io.append_section(
            f'What limits things PQ (checkpoint {args.checkpoint_path}, val)',
            lines)


if __name__ == '__main__':
    main()
