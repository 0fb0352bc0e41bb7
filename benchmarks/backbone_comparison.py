r"""MaskConver backbones side by side: size, latency and shapes PQ (issue #17).

Example (each DIR is a finished `python -m maskconver_tf.demo` run whose
backbone is that experiment's; for MobileNetV4 add
`--params_override task.model.backbone.mobilenet_trunk.model_id=
MobileNetV4ConvSmall` to the demo):
  python benchmarks/backbone_comparison.py \
      --run maskconver_mobilenet_mh_coco=/tmp/demo_mh \
      --run maskconver_mobilenetv4_conv_small_coco=/tmp/demo_s \
      --run maskconver_mobilenetv4_conv_medium_coco=/tmp/demo_m \
      --work_dir /tmp/backbones [--sizes 256,640] [--litert_benchmark] \
      [--plot benchmarks/backbones_pq_vs_int8_latency.png] [--record]

Per experiment (the COCO model: 201 class channels, K 50):
- parameters and multiply-adds from `benchmarks/model_stats.py`;
- full int8 / float32 and int8 backbone-alone p50 at each size from
  `benchmarks/tflite_matrix.py` (graphs full_s4_split and backbone, XNNPACK,
  initial weights with BatchNorm re-estimated); its JSON is cached in
  work_dir/<experiment>/matrix.json, delete it to re-time;
- from the demo run (the shapes model: 8 class channels, the demo's K):
  float .tflite PQ on val and on the shifted set, the int8 drop on both,
  the demo's training wall time and its own int8 p50 of the trained model.
Prints a markdown table (--record appends it to benchmarks/RESULTS.md) and
plots shapes PQ against int8 latency (--plot).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import demo_levers  # noqa: E402

FULL, BACKBONE = 'full s4 split', 'backbone'


def parse_run(spec):
    """'experiment=DIR' -> (experiment, DIR)."""
    experiment, sep, path = spec.partition('=')
    if not sep or not experiment or not path:
        raise SystemExit(f'backbone_comparison: --run {spec!r}: expected '
                         'EXPERIMENT=DEMO_OUTPUT_DIR')
    return experiment, path


def model_id_of(params):
    """The mobilenet_trunk model_id of a config dict (as_dict, params.yaml)."""
    backbone = params['task']['model']['backbone']
    if backbone.get('type') != 'mobilenet_trunk':
        raise ValueError(f'backbone type {backbone.get("type")!r}, expected '
                         'mobilenet_trunk')
    return backbone['mobilenet_trunk']['model_id']


def check_backbone(experiment, demo_dir):
    """Raises SystemExit unless the demo run trained `experiment`'s backbone."""
    import yaml
    from official.core import exp_factory
    from maskconver_tf import registry_imports  # noqa: F401
    want = model_id_of(exp_factory.get_exp_config(experiment).as_dict())
    path = os.path.join(demo_dir, 'model', 'params.yaml')
    if not os.path.exists(path):
        raise SystemExit(f'backbone_comparison: {path} not found (expected '
                         'the output_dir of a finished demo run)')
    with open(path) as f:
        got = model_id_of(yaml.safe_load(f))
    if got != want:
        raise SystemExit(f'backbone_comparison: {path} trained backbone '
                         f'{got!r}, but {experiment} uses {want!r}')


def p50(matrix, size, graph, precision):
    """p50 ms of one XNNPACK row of a tflite_matrix JSON; None if absent."""
    for r in matrix['rows']:
        if (r['size'], r['graph'], r['precision'], r['xnnpack']) == (
                size, graph, precision, True):
            return r['p50_ms']
    return None


def comparison_row(experiment, stats, matrix, summary, demo_latency, sizes):
    """One experiment's numbers (a dict; see `format_table` for units)."""
    row = {'experiment': experiment,
           'parameters_m': stats['parameters']['total']['trainable'] / 1e6,
           'gmacs': {s: stats_s['multiply_adds']['dense_network'] / 1e9
                     for s, stats_s in stats['by_size'].items()},
           'latency': {}}
    for size in sizes:
        full_q = p50(matrix, size, FULL, 'int8')
        back_q = p50(matrix, size, BACKBONE, 'int8')
        full_f = p50(matrix, size, FULL, 'float32')
        row['latency'][size] = {
            'int8_ms': full_q, 'float32_ms': full_f, 'backbone_int8_ms': back_q,
            'full_over_backbone': full_q / back_q if full_q and back_q else None,
            'float_over_int8': full_f / full_q if full_q and full_f else None}
    pq = {}
    for split in demo_levers.SPLITS:
        f = demo_levers._pq(summary, 'tflite float32', split, 'All')
        q = demo_levers._pq(summary, 'tflite int8', split, 'All')
        things = demo_levers._pq(summary, 'tflite float32', split, 'Things')
        pq[split] = {'float': f, 'things': things,
                     'int8_drop': None if f is None or q is None else f - q}
    row['pq'] = pq
    row['demo_train_min'] = summary['timings_s'].get('train', 0.0) / 60
    row['demo_int8_ms'] = demo_latency
    return row


def _c(value, fmt='{:.2f}'):
    return '-' if value is None else fmt.format(value)


def format_table(rows, sizes):
    head = ['experiment', 'params (M)']
    head += [f'GMACs {s}' for s in sizes]
    for s in sizes:
        head += [f'int8 ms {s}', f'float ms {s}', f'backbone int8 ms {s}',
                 f'full / backbone {s}', f'float / int8 {s}']
    head += ['shapes val PQ / Things (float)', 'int8 drop val',
             'shifted PQ / Things (float)', 'int8 drop shifted',
             'demo train min', 'demo int8 ms (trained, 256)']
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + ' --- |' * len(head)]
    for r in rows:
        cells = [f'`{r["experiment"]}`', f'{r["parameters_m"]:.2f}']
        cells += [f'{r["gmacs"][s]:.2f}' for s in sizes]
        for s in sizes:
            lat = r['latency'][s]
            cells += [_c(lat['int8_ms']), _c(lat['float32_ms']),
                      _c(lat['backbone_int8_ms']),
                      _c(lat['full_over_backbone'], '{:.2f}x'),
                      _c(lat['float_over_int8'], '{:.2f}x')]
        for split in demo_levers.SPLITS:
            pq = r['pq'][split]
            cells += [f'{_c(pq["float"])} / {_c(pq["things"])}',
                      _c(pq['int8_drop'])]
        cells += [f'{r["demo_train_min"]:.1f}', _c(r['demo_int8_ms'])]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def plot(rows, sizes, path):
    """Shapes PQ (val, shifted; float .tflite) against full int8 p50."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.2),
                             squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for split, marker in (('val', 'o'), ('shifted', '^')):
            xs = [r['latency'][size]['int8_ms'] for r in rows]
            ys = [r['pq'][split]['float'] for r in rows]
            ax.plot(xs, ys, marker, linestyle='none', label=f'{split} set')
            for x, y, r in zip(xs, ys, rows):
                if x is not None and y is not None:
                    ax.annotate(_short(r['experiment']), (x, y),
                                textcoords='offset points', xytext=(5, 3),
                                fontsize=8)
        ax.set_xlabel(f'full int8 .tflite p50 at {size} px (ms, COCO model)')
        ax.set_ylabel('shapes PQ, float .tflite (make demo budget)')
        ax.grid(alpha=0.3)
        ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _short(experiment):
    return {'maskconver_mobilenet_mh_coco': 'MN-MH',
            'maskconver_mobilenetv4_conv_small_coco': 'MNv4-Conv-S',
            'maskconver_mobilenetv4_conv_medium_coco': 'MNv4-Conv-M',
            }.get(experiment, experiment)


def _matrix(experiment, work_dir, sizes, litert):
    from benchmarks import tflite_matrix
    path = os.path.join(work_dir, experiment, 'matrix.json')
    if not os.path.exists(path):
        args = ['--experiment', experiment,
                '--sizes', ','.join(map(str, sizes)),
                '--graphs', 'full_s4_split,backbone', '--xnnpack', 'on',
                '--work_dir', os.path.join(work_dir, experiment),
                '--json', path]
        tflite_matrix.main(args + (['--litert_benchmark'] if litert else []))
    with open(path) as f:
        return json.load(f)


def _stats(experiment, sizes):
    from benchmarks import model_stats
    by_size = {s: model_stats.model_stats(experiment, s) for s in sizes}
    return dict(by_size[sizes[0]], by_size=by_size)


def _demo_latency(demo_dir):
    path = os.path.join(demo_dir, 'latency', 'int8.json')
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)['p50_ms']


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--run', action='append', required=True,
                        help='EXPERIMENT=DEMO_OUTPUT_DIR (repeat)')
    parser.add_argument('--sizes', default='256,640')
    parser.add_argument('--work_dir', default='/tmp/maskconver_backbones')
    parser.add_argument('--litert_benchmark', action='store_true')
    parser.add_argument('--plot', default=None, help='PNG path')
    parser.add_argument('--record', action='store_true')
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(',')]
    runs = [parse_run(spec) for spec in args.run]
    for experiment, demo_dir in runs:  # fail before any timing
        check_backbone(experiment, demo_dir)
    rows = []
    for experiment, demo_dir in runs:
        _, summary = demo_levers.load_run(demo_dir)
        rows.append(comparison_row(
            experiment, _stats(experiment, sizes),
            _matrix(experiment, args.work_dir, sizes, args.litert_benchmark),
            summary, _demo_latency(demo_dir), sizes))
    lines = format_table(rows, sizes)
    print('\n'.join(lines))
    if args.plot:
        plot(rows, sizes, args.plot)
        print(f'wrote {args.plot}')
    if args.record:
        from benchmarks import results_io
        note = ['', 'Latency: the COCO models (201 classes, K 50), initial '
                'weights with BatchNorm re-estimated on shapes images, 2 '
                'threads, XNNPACK, p50 of tflite_matrix rounds (full = '
                'full_s4_split with in-graph post-processing). PQ: the '
                '`make demo` recipe with only the backbone changed (shapes, '
                '8 classes); demos: ' + ', '.join(
                    f'`{_short(e)}` {d}' for e, d in runs) + '.']
        if args.plot:
            note.append(f'Plot: `{os.path.relpath(args.plot)}`.')
        results_io.append_section(
            'Backbones side by side: MobileNet-MH, MobileNetV4-Conv-S / -M',
            lines + note)
    return 0


if __name__ == '__main__':
    sys.exit(main())
