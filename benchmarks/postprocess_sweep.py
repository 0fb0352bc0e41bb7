r"""Post-processing thresholds chosen on val: PQ of one checkpoint per setting.

Example:
  python benchmarks/postprocess_sweep.py --checkpoint_path demo_output/model \
    --params_override "task.validation_data.input_path=demo_output/tfrecords/val*" \
    --grid "object_mask_threshold=0.01,0.1,0.2;overlap_threshold=0.5,0.7" \
    --output_dir /tmp/sweep [--record]

The config is the params.yaml next to the checkpoint (as trained), then
--params_override. The network runs once per validation image; every
setting of the grid (the Cartesian product of the `;`-separated lists of
`panoptic_merge` arguments) re-runs only the merge, a pure function of the
cached proposals and logits, and scores it with the same official PQ as
`maskconver_tf.evaluate`. Prints one row per setting (best first) and the
overrides of the best; with --record appends the table to
benchmarks/RESULTS.md. Choose on val, then confirm on a split the sweep did
not see (the demo's shifted set).
"""

import argparse
import contextlib
import io
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from maskconver_tf import evaluate as evaluate_lib  # noqa: E402
from maskconver_tf import inference  # noqa: E402

# panoptic_merge arguments a sweep may set, with their config types.
SWEEPABLE = {'object_mask_threshold': float, 'small_area_threshold': int,
             'overlap_threshold': float, 'void_prob_threshold': float}
GROUPS = ('All', 'Things', 'Stuff')


def parse_grid(text):
    """'a=1,2;b=3' -> [('a', [1, 2]), ('b', [3])] (typed, order kept)."""
    grid = []
    for part in filter(None, (p.strip() for p in text.split(';'))):
        name, sep, values = part.partition('=')
        name = name.strip()
        if not sep or name not in SWEEPABLE:
            raise SystemExit(f'postprocess_sweep: --grid entry {part!r}: '
                             f'expected NAME=v1,v2 with NAME one of '
                             f'{sorted(SWEEPABLE)}')
        try:
            typed = [SWEEPABLE[name](v) for v in values.split(',') if v.strip()]
        except ValueError:
            raise SystemExit(f'postprocess_sweep: --grid {name}: values '
                             f'{values!r} are not {SWEEPABLE[name].__name__}s'
                             ) from None
        if not typed:
            raise SystemExit(f'postprocess_sweep: --grid {name}: no values')
        grid.append((name, typed))
    if not grid:
        raise SystemExit('postprocess_sweep: --grid is empty')
    return grid


def settings(grid):
    """Every combination of the grid as a dict."""
    names = [name for name, _ in grid]
    return [dict(zip(names, values))
            for values in itertools.product(*(v for _, v in grid))]


class CachedForward:
    """Memoises a predictor's network call by input bytes (the merge is
    what changes between settings)."""

    def __init__(self, forward):
        self._forward = forward
        self._cache = {}
        self.calls = 0

    def __call__(self, x):
        key = x.numpy().tobytes()
        if key not in self._cache:
            self.calls += 1
            self._cache[key] = self._forward(x)
        return self._cache[key]


def sweep(predictor, params, grid, output_dir, max_images=0, coco=None):
    """Rows (setting, {group: pq}) in the grid's order; `coco` = dict of
    gt_json / gt_dir / image_dir (else the config's validation TFRecords)."""
    predictor._forward = CachedForward(predictor._forward)
    base = dict(predictor._merge_config)
    rows = []
    for i, setting in enumerate(settings(grid)):
        predictor._merge_config = dict(base, **setting)
        with contextlib.redirect_stdout(io.StringIO()):
            results = evaluate_lib.evaluate(
                predictor, os.path.join(output_dir, f'setting_{i}'),
                params=params, max_images=max_images, show_progress=False,
                **(coco or {}))
        pq = {g: 100 * results[g]['pq'] for g in GROUPS}
        rows.append((setting, pq))
        print(f'{setting}: PQ ' + ' / '.join(f'{pq[g]:.2f}' for g in GROUPS),
              flush=True)
    predictor._merge_config = base
    return rows


def table(rows, trained):
    """Markdown rows, best PQ All first; the trained setting marked."""
    names = list(rows[0][0])
    lines = ['| ' + ' | '.join(names) + ' | PQ All | Things | Stuff |',
             '| ' + ' | '.join('---' for _ in names + list(GROUPS)) + ' |']
    for setting, pq in sorted(rows, key=lambda r: -r[1]['All']):
        mark = ' (as trained)' if all(trained.get(k) == v
                                      for k, v in setting.items()) else ''
        lines.append('| ' + ' | '.join(str(setting[n]) for n in names) +
                     ' | ' + ' | '.join(f'{pq[g]:.2f}' for g in GROUPS) +
                     f'{mark} |')
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--checkpoint_path', required=True)
    parser.add_argument('--experiment', default=None)
    parser.add_argument('--params_override', default=None)
    parser.add_argument('--grid', required=True,
                        help='NAME=v1,v2;NAME=... over ' + ', '.join(SWEEPABLE))
    parser.add_argument('--output_dir', required=True)
    parser.add_argument('--gt_json', help='COCO panoptic ground truth (with '
                        '--gt_dir, --image_dir) instead of the TFRecords')
    parser.add_argument('--gt_dir')
    parser.add_argument('--image_dir')
    parser.add_argument('--max_images', type=int, default=0)
    parser.add_argument('--record', action='store_true')
    args = parser.parse_args(argv)
    grid = parse_grid(args.grid)
    coco = {k: getattr(args, k) for k in ('gt_json', 'gt_dir', 'image_dir')}
    if any(coco.values()) and not all(coco.values()):
        parser.error('--gt_json, --gt_dir and --image_dir go together')
    predictor = inference.load_checkpoint_predictor(
        args.checkpoint_path, experiment=args.experiment,
        params_override=args.params_override)
    trained = dict(predictor._merge_config)
    rows = sweep(predictor, predictor.params, grid, args.output_dir,
                 args.max_images, coco if coco['gt_json'] else None)
    best = max(rows, key=lambda r: r[1]['All'])[0]
    lines = table(rows, trained)
    print('\n'.join(lines))
    prefix = 'task.model.panoptic_generator.'
    overrides = ','.join(f'{prefix}{k}={v}' for k, v in best.items())
    print(f'best on this split: {overrides}')
    print(f'network runs: {predictor._forward.calls} (one per image)')
    if args.record:
        from benchmarks import results_io
        results_io.append_section(
            f'Post-processing sweep ({args.checkpoint_path})',
            [f'- checkpoint: `{args.checkpoint_path}`',
             f'- validation data: `{coco["gt_json"] or predictor.params.task.validation_data.input_path}`',
             '', *lines, '', f'Best on this split: `{overrides}`.'])


if __name__ == '__main__':
    main()
