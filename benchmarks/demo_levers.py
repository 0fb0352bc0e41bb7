r"""Table of demo runs (accuracy levers): PQ on val and on the shifted set.

Example (each DIR is a `python -m maskconver_tf.demo --output_dir DIR
[--params_override ...]` run):
  python benchmarks/demo_levers.py /tmp/base:"the recipe" \
      /tmp/aa:"AutoAugment" [--record]

Reads DIR/report/summary.json of each run and prints (with --record appends
to benchmarks/RESULTS.md) one row per run: its overrides, val and shifted
PQ (All / Things / Stuff) of the float .tflite, the int8 drop on both, the
training wall time and the images/s it implies.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SPLITS = ('val', 'shifted')
GROUPS = ('All', 'Things', 'Stuff')


def load_run(spec):
    """'DIR[:label]' -> (label, summary dict)."""
    path, _, label = spec.partition(':')
    summary_path = os.path.join(path, 'report', 'summary.json')
    if not os.path.exists(summary_path):
        raise SystemExit(f'demo_levers: {summary_path} not found (expected '
                         'the output_dir of a finished demo run)')
    with open(summary_path) as f:
        return label or os.path.basename(os.path.normpath(path)), json.load(f)


def _pq(summary, model, split, group):
    value = summary['pq'].get(model, {}).get(split, {}).get(group)
    return None if value is None else 100 * value


def _cell(value, fmt='{:.2f}'):
    return '-' if value is None else fmt.format(value)


def row(label, summary):
    """One markdown row of the levers table."""
    # Runs from before the demo trained in stages have one implicit stage.
    stages = summary.get('stages') or [summary]
    cells = [label, f'`{summary["params_override"] or "-"}`',
             ' -> '.join(str(s['input_size']) for s in stages),
             ' + '.join(f'{s["train_steps"]} x {s["batch_size"]}'
                        for s in stages)]
    for split in SPLITS:
        cells.append(' / '.join(_cell(_pq(summary, 'tflite float32', split, g))
                                for g in GROUPS))
    for split in SPLITS:
        f = _pq(summary, 'tflite float32', split, 'All')
        q = _pq(summary, 'tflite int8', split, 'All')
        cells.append(_cell(None if f is None or q is None else f - q, '{:+.2f}'))
    cells.append(_cell(summary['timings_s'].get('train', 0) / 60, '{:.1f}'))
    cells.append(_cell(summary.get('train_images_per_s'), '{:.1f}'))
    return '| ' + ' | '.join(cells) + ' |'


HEADER = [
    '| lever | overrides | px | steps x batch | val PQ All / Things / Stuff '
    '(float .tflite) | shifted PQ All / Things / Stuff | int8 drop val | '
    'int8 drop shifted | training min | train images/s |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('runs', nargs='+', help='DIR[:label] of demo runs')
    parser.add_argument('--record', action='store_true',
                        help='append the table to benchmarks/RESULTS.md')
    args = parser.parse_args(argv)
    lines = HEADER + [row(*load_run(spec)) for spec in args.runs]
    print('\n'.join(lines))
    if args.record:
        from benchmarks import results_io
        results_io.append_section(
            'Accuracy levers (`make demo` budget, val and the shifted set)',
            lines)


if __name__ == '__main__':
    main()
