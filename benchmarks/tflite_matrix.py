r"""Latency matrix of a MaskConver model: sizes x graph x precision x delegate.

Example:
  python benchmarks/tflite_matrix.py --sizes 256,640 --work_dir /tmp/mc_matrix \
    [--experiment maskconver_mobilenet_mh_coco] [--checkpoint_path CKPT] \
    [--graphs full_s4_split,cnn_split] [--xnnpack on|off|both] \
    [--build_only] [--litert_benchmark] [--record] [--json rows.json]

For each input size: exports the experiment's model (default the reference
mobile model, maskconver_mobilenet_mh_coco) as a tflite-type SavedModel,
converts
(`GRAPHS`)
- "cnn": backbone + ASPP + heads only (outputs heatmaps and embeddings),
- "full s<k>": the whole pipeline with in-graph post-processing (merge
  stride k, see `graph_rewrites.merge_at_stride`), with the sparse heads
  (`graph_rewrites.sparse_heads`: the center-embedding tail at the K
  proposals, the mask-feature classifier folded into the slot embeddings)
  unless the graph says "dense" (the multi-scale model has no sparse
  form: its full graphs are dense),
- "backbone": the backbone alone (MobileNetMultiAVGSeg, resnet_unet) (the issue's latency goals are
  stated relative to it: int8 2.3 ms at 256 px on their machine),
- "split": the heads' 7x7 depthwise convs traced as 7x3 + 7x3 + 7x1 tiles
  with their BatchNorm folded in (`graph_rewrites.split_large_depthwise`,
  same function),
in float32, fp16 and int8 (int8_full_fp32_io), and times each with
`benchmarks/latency.py` with XNNPACK on and off; --tf_cpu also times the
full graphs' SavedModels in TensorFlow (`benchmarks/tf_latency.py`, same
threads, a subprocess so its thread settings hold); --litert_benchmark also
runs LiteRT's own benchmark tool in every round (`latency.litert_benchmark`)
and adds its mean, pooled over the rounds, and ours / its mean (marked
">10%" past `latency.LITERT_TOLERANCE`) to the table. Calibration uses images
of the built-in shapes set (accuracy numbers need the experiment's data).
Without a checkpoint the weights are the initial ones with BatchNorm
statistics re-estimated on the calibration images (`reestimate_batch_norm`):
latency depends on the int8 scales, and the initial statistics make
activations vanish (scales ~1e-8 next to ~1e-4), so XNNPACK refuses the
heads' fusion ADDs (input/output scale ratio below 2^-10) and the runtime
falls back to a kernel 18x slower.
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from benchmarks import latency  # noqa: E402
from maskconver_tf import registry_imports  # noqa: E402,F401
from maskconver_tf.serving import export_module  # noqa: E402
from maskconver_tf.serving import graph_rewrites  # noqa: E402
from maskconver_tf.serving import tflite_conversion as tc  # noqa: E402

DEFAULT_EXPERIMENT = 'maskconver_mobilenet_mh_coco'
PRECISIONS = (('float32', 'none'), ('fp16', 'fp16'),
              ('int8', 'int8_full_fp32_io'))


def shapes_calibration(size, count, work_dir):
    """`count` shapes images preprocessed to size x size (float32)."""
    from maskconver_tf.data import shapes
    out = os.path.join(work_dir, 'calibration_shapes')
    if not os.path.exists(os.path.join(out, 'panoptic.json')):
        shapes.generate_dataset(out, count, image_size=256, seed=7)
    images = []
    for name in sorted(os.listdir(os.path.join(out, 'images')))[:count]:
        data = tf.io.read_file(os.path.join(out, 'images', name))
        images.append(tf.image.decode_image(data, channels=3).numpy())
    return tc.calibration_from_arrays(images, (size, size))


def save_cnn(model, size, path, split, backbone_only=False):
    """SavedModel of backbone + decoder + heads (the CNN alone), or of the
    backbone alone (the reference point of the issue's latency goals)."""
    module = tf.Module()
    module.model = model

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3],
                                                tf.float32, name='inputs')])
    def serve(images):
        if backbone_only:
            return model.backbone(images, training=False)
        heat, centers, pixels = model.dense_outputs(images, training=False)
        return {'class_heatmaps': heat, 'center_embeddings': centers,
                'per_pixel_embeddings': pixels}

    module.serve = serve
    scope = (graph_rewrites.split_large_depthwise(model) if split
             else contextlib.nullcontext())
    from tf_keras.src.saving.legacy.saved_model import utils
    # Saving may retrace `serve`: keep the split scope around it.
    with scope, utils.keras_option_scope(save_traces=False):
        tf.saved_model.save(module, path,
                            signatures={'serving_default': serve})


# (graph, merge stride or None for the CNN alone, split 7x7, sparse heads,
# precisions)
GRAPHS = (('full s1 split', 1, True, True, ('float32', 'fp16', 'int8')),
          ('full s4 split', 4, True, True, ('float32', 'int8')),
          ('full s4 split dense', 4, True, False, ('float32', 'int8')),
          ('cnn', None, False, False, ('float32', 'fp16', 'int8')),
          ('cnn split', None, True, False, ('float32', 'int8')),
          ('backbone', None, False, False, ('float32', 'int8')))


def reestimate_batch_norm(model, images):
    """Sets every BatchNorm's moving statistics to those of `images`.

    One training-mode pass of the CNN with momentum 0: each norm then
    normalises as it would after training on such images. Weights are
    unchanged. Args: model, a MaskConverModel; images, float32 [H, W, 3]
    preprocessed.
    """
    norms = [layer for layer in model.submodules
             if graph_rewrites.is_batch_norm(layer)]
    saved = [(norm.momentum, norm.trainable) for norm in norms]
    for norm in norms:
        # A frozen norm (bn_trainable: false) ignores training=True.
        norm.momentum, norm.trainable = 0.0, True
    try:
        model.dense_outputs(tf.stack(images), training=True)
    finally:
        for norm, (momentum, trainable) in zip(norms, saved):
            norm.momentum, norm.trainable = momentum, trainable
    return len(norms)


def _tag(graph):
    return graph.replace(' ', '_')


def build_models(size, work_dir, checkpoint_path, calibration,
                 graphs=GRAPHS, experiment=DEFAULT_EXPERIMENT):
    """Writes the .tflite files of one size; returns [(graph, label, path)]."""
    params = export_module.load_params(experiment)
    quant = dict(PRECISIONS)
    out = []
    model = None
    if checkpoint_path is None:
        model = export_module.MaskConverModule(
            params, batch_size=1, input_image_size=[size, size],
            input_type='tflite').model
        count = reestimate_batch_norm(model, calibration)
        print(f'initial weights, statistics of {count} BatchNorms '
              f're-estimated on {len(calibration)} images', flush=True)
    for graph, stride, split, sparse, labels in graphs:
        tag = _tag(graph)
        export_dir = os.path.join(work_dir, f'export_{size}_{tag}')
        if stride is not None:
            module = export_module.export_saved_model(
                params, export_dir, checkpoint_path=checkpoint_path,
                batch_size=1, input_type='tflite',
                input_image_size=[size, size], merge_stride=stride,
                # None: sparse where the model has a sparse form.
                split_depthwise=split, sparse_heads=None if sparse else False,
                experiment=experiment, model=model)
            model = module.model
            with open(os.path.join(export_dir,
                                   export_module.SIDECAR_NAME)) as f:
                meta = json.load(f)
        elif model is None:
            raise ValueError('list a full graph before the CNN graphs')
        else:
            save_cnn(model, size, export_dir, split,
                     backbone_only=graph == 'backbone')
        for label in labels:
            path = os.path.join(work_dir, f'{tag}_{size}_{label}.tflite')
            if not os.path.exists(path):
                t = time.time()
                if stride is not None:
                    tc.export_tflite(
                        os.path.join(export_dir, 'saved_model'), path,
                        quant_type=quant[label], calibration=calibration,
                        base_metadata=meta,
                        calibration_source='shapes (latency only)')
                else:
                    data = tc.convert_saved_model(export_dir, quant[label],
                                                  calibration)
                    tc.check_model(data, quant[label])
                    with open(path, 'wb') as f:
                        f.write(data)
                print(f'converted {path} in {time.time() - t:.0f} s',
                      flush=True)
            out.append((graph, label, path))
    return out


def tf_cpu_latency(saved_model_dir, num_threads, num_runs):
    """`benchmarks/tf_latency.py` in a fresh process; its result dict."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          'tf_latency.py')
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'tf.json')
        subprocess.run([sys.executable, script, '--saved_model',
                        saved_model_dir, '--num_threads', str(num_threads),
                        '--num_runs', str(num_runs), '--json', out],
                       check=True)
        with open(out) as f:
            return json.load(f)


def write_rows(path, rows, args):
    """The matrix as JSON: one dict per (size, graph, precision, XNNPACK)."""
    keys = ('mean_ms', 'p50_ms', 'p90_ms', 'min_ms', 'init_ms', 'size_bytes',
            'litert_mean_ms')
    out = {'experiment': args.experiment, 'num_threads': args.num_threads,
           'rounds': args.rounds, 'num_runs': args.num_runs,
           'checkpoint_path': args.checkpoint_path,
           'load_average': list(os.getloadavg()),
           'rows': [dict(size=size, graph=graph, precision=label,
                         xnnpack=xnnpack,
                         **{k: r[k] for k in keys if k in r})
                    for size, graph, label, xnnpack, r in rows]}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(out, f, indent=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', default='256,640')
    parser.add_argument('--experiment', default=DEFAULT_EXPERIMENT)
    parser.add_argument('--work_dir', default='/tmp/maskconver_matrix')
    parser.add_argument('--checkpoint_path', default=None)
    parser.add_argument('--num_threads', type=int, default=2)
    parser.add_argument('--num_runs', type=int, default=30)
    parser.add_argument('--rounds', type=int, default=3,
                        help='interleaved rounds over the models, each with '
                        'a fresh interpreter and --num_runs runs; statistics '
                        'pool the rounds (on a shared 2-core VM one '
                        'interpreter sometimes runs at 1-thread speed)')
    parser.add_argument('--calibration_steps', type=int, default=16)
    parser.add_argument('--graphs', default=None,
                        help='comma-separated graph tags (default all): ' +
                        ', '.join(_tag(g[0]) for g in GRAPHS))
    parser.add_argument('--xnnpack', choices=('on', 'off', 'both'),
                        default='both')
    parser.add_argument('--tf_cpu', action='store_true',
                        help='also time the full graphs in TensorFlow')
    parser.add_argument('--litert_benchmark', action='store_true',
                        help="also time each .tflite with LiteRT's "
                        'benchmark_litert_model (see benchmarks/latency.py)')
    parser.add_argument('--build_only', action='store_true',
                        help='convert only (time later, on a quiet machine)')
    parser.add_argument('--record', action='store_true',
                        help='append the table to benchmarks/RESULTS.md')
    parser.add_argument('--json', default=None,
                        help='also write the rows to this JSON file '
                        '(benchmarks/backbone_comparison.py reads it)')
    args = parser.parse_args(argv)
    graphs = GRAPHS
    if args.graphs:
        wanted = args.graphs.split(',')
        unknown = set(wanted) - {_tag(g[0]) for g in GRAPHS}
        if unknown:
            parser.error(f'--graphs: unknown {sorted(unknown)}; expected '
                         f'{[_tag(g[0]) for g in GRAPHS]}')
        graphs = tuple(g for g in GRAPHS if _tag(g[0]) in wanted)
        if graphs[0][1] is None:
            parser.error('--graphs: the CNN graphs come from a full graph; '
                         'list one (e.g. full_s4_split) too')
    delegates = {'on': (True,), 'off': (False,), 'both': (True, False)}[
        args.xnnpack]
    os.makedirs(args.work_dir, exist_ok=True)
    rows = []
    for size in [int(s) for s in args.sizes.split(',')]:
        calibration = shapes_calibration(size, args.calibration_steps,
                                         args.work_dir)
        paths = build_models(size, args.work_dir, args.checkpoint_path,
                             calibration, graphs, args.experiment)
        if args.build_only:
            continue
        cases = [(graph, label, path, xnnpack) for graph, label, path in paths
                 for xnnpack in delegates]
        runs = {i: [] for i in range(len(cases))}
        for _ in range(args.rounds):
            for i, (graph, label, path, xnnpack) in enumerate(cases):
                runs[i].append(latency.benchmark(
                    path, args.num_threads, args.num_runs,
                    use_xnnpack=xnnpack, litert=args.litert_benchmark))
        for i, (graph, label, path, xnnpack) in enumerate(cases):
            r = dict(runs[i][0])
            r.update(latency.run_statistics(
                [t for one in runs[i] for t in one['runs_ms']]))
            if args.litert_benchmark:
                # Equal runs per round: the mean of means is the pooled mean.
                r['litert_mean_ms'] = statistics.mean(
                    one['litert_benchmark']['avg_ms'] for one in runs[i])
            rows.append((size, graph, label, xnnpack, r))
            print(f'{size} {graph:8s} {label:7s} xnnpack={xnnpack!s:5s} '
                  f'mean {r["mean_ms"]:7.2f} p50 {r["p50_ms"]:7.2f} ms '
                  f'({r["size_bytes"] / 1e6:.1f} MB)', flush=True)
        if args.tf_cpu:
            for graph, stride, *_ in graphs:
                if stride is None:
                    continue
                r = tf_cpu_latency(os.path.join(
                    args.work_dir, f'export_{size}_{_tag(graph)}',
                    'saved_model'), args.num_threads, args.num_runs)
                r.update(init_ms=r['load_ms'], size_bytes=0, sha256='-')
                rows.append((size, graph, 'float32 (TF)', None, r))
                print(f'{size} {graph:8s} TF CPU mean {r["mean_ms"]:7.2f} '
                      f'p50 {r["p50_ms"]:7.2f} ms', flush=True)
    lines = ['| size | graph | precision | XNNPACK | mean ms | p50 ms | p90 ms '
             '| min ms | init ms | first ms | MB | sha256 |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- '
             '| --- |']
    if args.litert_benchmark:
        lines = [lines[0] + ' LiteRT tool mean ms | ours / LiteRT |',
                 lines[1] + ' --- | --- |']
    for size, graph, label, xnnpack, r in rows:
        litert = ''
        if args.litert_benchmark:
            theirs = r.get('litert_mean_ms')
            litert = ' - | - |'  # TF CPU rows
            if theirs is not None:
                mark = (f' (>{latency.LITERT_TOLERANCE:.0%})'
                        if latency.litert_disagrees(r['mean_ms'], theirs)
                        else '')
                litert = (f' {theirs:.2f} | {r["mean_ms"] / theirs:.2f}'
                          f'{mark} |')
        lines.append(
            f'| {size} | {graph} | {label} | '
            f'{"-" if xnnpack is None else "on" if xnnpack else "off"} | '
            f'{r["mean_ms"]:.2f} | {r["p50_ms"]:.2f} | {r["p90_ms"]:.2f} | '
            f'{r["min_ms"]:.2f} | '
            f'{r["init_ms"]:.0f} | {r["first_ms"]:.1f} | '
            f'{r["size_bytes"] / 1e6:.2f} | {r["sha256"][:12]} |' + litert)
    print('\n'.join(lines))
    load = os.getloadavg()
    note = (f'Load average during the run: {load[0]:.1f} / {load[1]:.1f} / '
            f'{load[2]:.1f} (1 / 5 / 15 min) on {os.cpu_count()} cores; '
            'above ~1 the means are inflated by other processes and "min" '
            'is the better estimate. int8 = int8_full_fp32_io with the '
            'default denylist (BATCH_MATMUL float); split = 7x7 depthwise '
            'as 7x3 + 7x3 + 7x1 tiles, BatchNorm folded in; s4 = merge on '
            'a 4x coarser canvas; full graphs use the sparse heads unless '
            'marked dense.')
    print(note)
    if args.json:
        write_rows(args.json, rows, args)
    if args.record:
        from benchmarks import results_io
        results_io.append_section(
            f'TFLite latency matrix, `{args.experiment}` '
            f'({args.num_threads} threads, {args.rounds} x {args.num_runs} '
            'runs, random '
            'inputs, ' + ('initial weights, BatchNorm re-estimated)'
                          if args.checkpoint_path is None else
                          f'checkpoint {args.checkpoint_path})'),
            lines + ['', note])


if __name__ == '__main__':
    main()
