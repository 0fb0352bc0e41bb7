r"""Class-embedding ablation: the shapes recipe with class embeddings off vs on.

MaskConver adds a class embedding to each center's mask embedding so that a
ring and a disc sharing one center still get different masks. This trains
`maskconver_shapes` twice through the train CLI (identical recipe and data,
`task.model.mask_embedding.use_class_embedding` false / true), scores both checkpoints with
official PQ on val, and reports PQ_th on all val images and on the
concentric ring/disc pairs alone.

Pairs-only PQ: the shapes ground truth lists `concentric_pairs` (ring and disc
segment ids) per image. The pairs-only ground truth keeps those segments and
turns every other pixel void (id 0), over the images that have pairs; the
predictions are unchanged, so by the panopticapi rules a predicted segment
lying mostly on other (now void) pixels is ignored, and PQ of the ring and
disc categories measures exactly the colliding instances.

Example:
  python benchmarks/class_embedding_ablation.py --work_dir /tmp/ablation \
    [--data_dir demo_output] [--on_model_dir demo_output/model] \
    [--train_steps 1500] [--record]

--data_dir reuses a demo output's data/ and tfrecords/ (else they are made
in --work_dir, as `make demo` makes them); --on_model_dir reuses a trained
embeddings-on run (e.g. the demo's) instead of training that arm again.
"""

import argparse
import json
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from maskconver_tf import demo  # noqa: E402
from maskconver_tf.evaluation import pq as pq_lib  # noqa: E402

ARMS = ('off', 'on')


def pairs_only_groundtruth(gt_json: str, gt_dir: str, out_dir: str) -> dict:
    """Writes the pairs-only ground truth; returns its JSON dict.

    Args:
      gt_json, gt_dir: COCO-panoptic ground truth whose annotations carry
        `concentric_pairs` ([ring_segment_id, disc_segment_id] lists).
      out_dir: receives panoptic.json and panoptic/ PNGs.

    Returns:
      the written JSON dict: images with at least one pair; segments_info
      and PNGs holding only the pairs' segments (everything else id 0).
    """
    with open(gt_json) as f:
        gt = json.load(f)
    png_dir = os.path.join(out_dir, 'panoptic')
    os.makedirs(png_dir, exist_ok=True)
    annotations, image_ids = [], set()
    for ann in gt['annotations']:
        pairs = ann.get('concentric_pairs') or []
        keep = {int(s) for pair in pairs for s in pair}
        if not keep:
            continue
        label = f'{gt_json} image {ann["image_id"]}'
        ids = pq_lib.read_panoptic_png(os.path.join(gt_dir, ann['file_name']),
                                       label)
        segments = [s for s in ann['segments_info'] if s['id'] in keep]
        missing = keep - {s['id'] for s in segments}
        if missing:
            raise ValueError(f'{label}: concentric_pairs name segment ids '
                             f'{sorted(missing)} that segments_info lacks')
        ids = np.where(np.isin(ids, sorted(keep)), ids, 0)
        Image.fromarray(pq_lib.id2rgb(ids)).save(
            os.path.join(png_dir, ann['file_name']))
        annotations.append(dict(ann, segments_info=segments))
        image_ids.add(ann['image_id'])
    out = dict(gt, annotations=annotations,
               images=[im for im in gt['images'] if im['id'] in image_ids])
    with open(os.path.join(out_dir, 'panoptic.json'), 'w') as f:
        json.dump(out, f)
    return out


def pairs_only_pq(gt_json: str, gt_dir: str, pred_json: str, pred_dir: str,
                  out_dir: str) -> dict:
    """PQ of ring and disc on the pairs-only ground truth.

    Returns:
      {'pq', 'sq', 'rq' (fractions), 'tp', 'fp', 'fn', 'images', 'pairs',
      'per_class': {category id: per-class pq dict}}.
    """
    gt = pairs_only_groundtruth(gt_json, gt_dir, out_dir)
    with open(pred_json) as f:
        pred = json.load(f)
    image_ids = {im['id'] for im in gt['images']}
    pred = dict(pred, annotations=[a for a in pred['annotations']
                                   if a['image_id'] in image_ids])
    results = pq_lib.pq_compute(gt, pred, os.path.join(out_dir, 'panoptic'),
                                pred_dir)
    pair_categories = sorted({s['category_id'] for a in gt['annotations']
                              for s in a['segments_info']})
    rows = [results['per_class'][c] for c in pair_categories]
    tp, fp, fn = (sum(r[k] for r in rows) for k in ('tp', 'fp', 'fn'))
    iou = sum(r['iou'] for r in rows)
    sq = iou / tp if tp else 0.0
    rq = tp / (tp + 0.5 * fp + 0.5 * fn) if tp + fp + fn else 0.0
    pq_values = [r['pq'] for r in rows]
    return {'pq': float(np.mean(pq_values)),  # category mean, as PQ_th
            'pooled_sq': sq, 'pooled_rq': rq, 'tp': tp, 'fp': fp, 'fn': fn,
            'images': len(gt['images']),
            'pairs': sum(len(a['concentric_pairs'])
                         for a in gt['annotations']),
            'per_class': {c: results['per_class'][c] for c in pair_categories}}


class Ablation:
    """Trains and scores the two arms in `work_dir`."""

    def __init__(self, work_dir, data_dir=None, train_steps=None):
        self.work_dir = os.path.abspath(work_dir)
        # The demo's data stage and command runner, on its full budget.
        self.demo = demo.Demo(data_dir or self.work_dir, 'full')
        # Both arms train the demo's 128 px stage alone.
        self.stage = self.demo.stages[0]
        self.train_steps = train_steps

    def overrides(self, arm):
        extra = {'task.model.mask_embedding.use_class_embedding':
                 str(arm == 'on').lower()}
        if self.train_steps:
            extra.update({
                'trainer.train_steps': self.train_steps,
                'trainer.optimizer_config.learning_rate.cosine.decay_steps':
                    self.train_steps})
        return self.demo.overrides(self.stage, **extra)

    def experiment_args(self, arm):
        args = ['--experiment', demo.EXPERIMENT]
        for path in self.demo.config_files(self.stage):
            args += ['--config_file', path]
        return args + ['--params_override', self.overrides(arm)]

    def train(self, arm):
        model_dir = os.path.join(self.work_dir, f'embedding_{arm}')
        self.demo.run(f'train {arm}', [
            '-m', 'maskconver_tf.train', '--mode', 'train', '--model_dir',
            model_dir, '--enable_async_checkpointing=false']
            + self.experiment_args(arm), log_name=f'ablation_train_{arm}.log')
        return model_dir

    def evaluate(self, arm, model_dir):
        """Official PQ on val and pairs-only PQ of one checkpoint."""
        val = self.demo.path('data', 'val')
        gt_json = os.path.join(val, 'panoptic.json')
        gt_dir = os.path.join(val, 'panoptic')
        out = os.path.join(self.work_dir, f'eval_{arm}')
        self.demo.run(f'evaluate {arm}', [
            '-m', 'maskconver_tf.evaluate', '--checkpoint_path', model_dir,
            '--output_dir', out, '--gt_json', gt_json, '--gt_dir', gt_dir,
            '--image_dir', os.path.join(val, 'images')]
            + self.experiment_args(arm), log_name=f'ablation_eval_{arm}.log')
        with open(os.path.join(out, 'pq.json')) as f:
            full = json.load(f)
        pairs = pairs_only_pq(gt_json, gt_dir,
                              full['settings']['predictions_json'],
                              os.path.join(out, 'panoptic'),
                              os.path.join(out, 'pairs_groundtruth'))
        return {'val': full, 'pairs': pairs}


def _check_use_class_embedding(model_dir, arm):
    """The run's params.yaml must say the arm it is used for."""
    import yaml
    with open(os.path.join(model_dir, 'params.yaml')) as f:
        value = yaml.safe_load(f)['task']['model']['mask_embedding'][
            'use_class_embedding']
    if value != (arm == 'on'):
        raise SystemExit(f'{model_dir}/params.yaml has use_class_embedding '
                         f'{value}, not the {arm!r} arm')


def table(results) -> list:
    def pct(v):
        return '-' if v is None else f'{100 * v:.2f}'

    lines = ['| class embedding | PQ | PQ_th (all val) | PQ_st | '
             'PQ_th (concentric pairs) | pairs TP / FP / FN | ring PQ | '
             'disc PQ |', '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for arm in ARMS:
        r = results[arm]
        val, pairs = r['val'], r['pairs']
        per_class = [pct(v['pq']) for _, v in sorted(
            pairs['per_class'].items(), key=lambda kv: int(kv[0]))]
        lines.append(
            f'| {arm} | {pct(val["All"]["pq"])} | {pct(val["Things"]["pq"])} '
            f'| {pct(val["Stuff"]["pq"])} | {pct(pairs["pq"])} | '
            f'{pairs["tp"]} / {pairs["fp"]} / {pairs["fn"]} | '
            + ' | '.join(per_class) + ' |')
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work_dir', required=True)
    parser.add_argument('--data_dir', default=None,
                        help='a demo output dir whose data/ and tfrecords/ '
                        'to reuse (default: made in --work_dir)')
    parser.add_argument('--on_model_dir', default=None,
                        help='reuse this trained embeddings-on model_dir')
    parser.add_argument('--train_steps', type=int, default=None,
                        help='override the recipe\'s steps (both arms)')
    parser.add_argument('--record', action='store_true')
    args = parser.parse_args(argv)
    ablation = Ablation(args.work_dir, args.data_dir, args.train_steps)
    ablation.demo.data()
    results = {}
    for arm in ARMS:
        if arm == 'on' and args.on_model_dir:
            model_dir = os.path.abspath(args.on_model_dir)
            _check_use_class_embedding(model_dir, arm)
        else:
            model_dir = ablation.train(arm)
        results[arm] = ablation.evaluate(arm, model_dir)
        results[arm]['model_dir'] = model_dir
    lines = table(results)
    pairs = results['on']['pairs']
    note = (f'Pairs-only ground truth: {pairs["pairs"]} concentric ring/disc '
            f'pairs in {pairs["images"]} of '
            f'{results["on"]["val"]["settings"]["num_images"]} val images; '
            'every other pixel void (panopticapi rules). Train wall time (s): '
            + ', '.join(f'{k} {v:.0f}' for k, v in
                        ablation.demo.timings.items()) + '.')
    print('\n'.join(lines + ['', note]))
    with open(os.path.join(args.work_dir, 'ablation.json'), 'w') as f:
        json.dump(results, f, indent=1, default=str)
    if args.record:
        from benchmarks import results_io
        results_io.append_section(
            'Class-embedding ablation (maskconver_shapes recipe, 128 px)',
            lines + ['', note])


if __name__ == '__main__':
    main()
