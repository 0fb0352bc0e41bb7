r"""LiteRT latency of a .tflite: whole model, and per op / per stage.

Example:
  python benchmarks/latency.py --tflite /tmp/m.tflite --num_threads 2 \
    --num_runs 50 [--input_dir images/] [--no_xnnpack] [--op_profile] \
    [--record "title"]

Prints (and with --json / --record, saves) init time, first inference,
warm-up mean, mean, p50, p90 (ms), threads, delegate (XNNPACK on / off),
model size and sha256. The Python LiteRT interpreter has no op profiler, so
--op_profile times every operator alone: the model is run once with all
tensors preserved, then each operator is cut out into a one-op model fed
with its real input values and timed with the same threads and delegate.
Per-op times therefore leave out fusion across ops and are summed into
stages by the layer scope in the tensor names (backbone, decoder, heads,
mask embedding, post-processing).

Inputs: random values in the range of preprocessed images by default (the
top-K / merge tail then sees random heatmaps: give --input_dir for
representative post-processing times). Images are preprocessed with
`preprocess_image` to the model input size and quantised if the input is.
"""

import argparse
import glob
import hashlib
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

STAGES = (('mobile_net_trunk', 'backbone'), ('backbone', 'backbone'),
          ('res_net', 'backbone'), ('aspp', 'decoder'), ('fpn', 'decoder'),
          ('decoder', 'decoder'), ('class_head', 'heads'),
          ('center_head', 'heads'), ('mask_feature_head', 'heads'),
          ('mask_embedding_generator', 'mask_embedding'),
          ('proposal_generator', 'post_processing'),
          ('panoptic_merger', 'post_processing'))
STAGE_ORDER = ('backbone', 'decoder', 'heads', 'mask_embedding',
               'post_processing')


def _interpreter(model, num_threads, use_xnnpack, preserve=False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kwargs = dict(model_content=bytes(model), num_threads=num_threads,
                  experimental_preserve_all_tensors=preserve)
    if not use_xnnpack:
        kwargs['experimental_op_resolver_type'] = (
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter = Interpreter(**kwargs)
    interpreter.allocate_tensors()
    return interpreter


def load_inputs(model, input_dir=None, limit=8, seed=0):
    """List of input arrays (model dtype) for the model's first input."""
    from maskconver_tf.serving import tflite_conversion as tc
    detail = _interpreter(model, 1, False).get_input_details()[0]
    _, h, w, _ = detail['shape']
    if input_dir:
        import tensorflow as tf
        from maskconver_tf.ops import preprocess
        files = sorted(f for ext in ('jpg', 'jpeg', 'png', 'JPG', 'PNG')
                       for f in glob.glob(os.path.join(input_dir, f'*.{ext}')))
        if not files:
            sys.exit(f'latency: no .jpg/.png images in {input_dir}')
        images = []
        for path in files[:limit]:
            image = tf.image.decode_image(tf.io.read_file(path), channels=3,
                                          expand_animations=False)
            images.append(np.asarray(
                preprocess.preprocess_image(image, (h, w))[0])[np.newaxis])
    else:
        rng = np.random.RandomState(seed)
        images = [rng.uniform(-2.0, 2.5, (1, h, w, 3)).astype(np.float32)]
    return [tc.quantize_input(im, detail) for im in images]


def time_model(model, inputs, num_threads=2, use_xnnpack=True, num_runs=50,
               warmup_runs=5):
    """Whole-model latency in ms (init, first, warm-up mean, runs)."""
    start = time.perf_counter()
    interpreter = _interpreter(model, num_threads, use_xnnpack)
    init_ms = (time.perf_counter() - start) * 1e3
    index = interpreter.get_input_details()[0]['index']

    def run(i):
        interpreter.set_tensor(index, inputs[i % len(inputs)])
        t = time.perf_counter()
        interpreter.invoke()
        return (time.perf_counter() - t) * 1e3

    first = run(0)
    warm = [run(i) for i in range(warmup_runs)]
    times = [run(i) for i in range(num_runs)]
    return {'init_ms': init_ms, 'first_ms': first,
            'warmup_mean_ms': statistics.mean(warm) if warm else float('nan'),
            **run_statistics(times), 'warmup_runs': warmup_runs}


def run_statistics(times):
    """mean, min, p50, p90 (ms) and the runs themselves."""
    q = np.percentile(times, [50, 90])
    return {'mean_ms': statistics.mean(times), 'min_ms': min(times),
            'p50_ms': float(q[0]), 'p90_ms': float(q[1]),
            'num_runs': len(times), 'runs_ms': list(times)}


def _stage(name):
    head = name.split('/')[0]
    for prefix, stage in STAGES:
        if head.startswith(prefix):
            return stage
    # Ops outside any layer scope belong to the post-processing tail.
    return 'post_processing'


def op_profile(model, inputs, num_threads=2, use_xnnpack=True, num_runs=10):
    """Times every operator of subgraph 0 alone on its real inputs.

    Returns a list of dicts (index, op, dtype, stage, name, ms) in graph
    order.
    """
    from tensorflow.lite.tools import flatbuffer_utils
    from maskconver_tf.serving import tflite_conversion as tc
    full = _interpreter(model, 1, False, preserve=True)
    full.set_tensor(full.get_input_details()[0]['index'], inputs[0])
    full.invoke()
    base = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    graph = base.subgraphs[0]
    operators = graph.operators
    base.signatureDefs = []
    base.metadata = []
    rows = []
    for i, op in enumerate(operators):
        name = graph.tensors[op.outputs[0]].name
        name = name.decode() if isinstance(name, bytes) else name
        feeds = [t for t in op.inputs if t >= 0 and not (
            graph.tensors[t].buffer and base.buffers[graph.tensors[t].buffer]
            .data is not None and len(base.buffers[graph.tensors[t].buffer]
                                      .data))]
        graph.operators = [op]
        graph.inputs = feeds
        graph.outputs = list(op.outputs)
        one = bytes(flatbuffer_utils.convert_object_to_bytearray(base))
        interpreter = _interpreter(one, num_threads, use_xnnpack)
        for detail, t in zip(interpreter.get_input_details(), feeds):
            interpreter.set_tensor(detail['index'], full.get_tensor(t))
        interpreter.invoke()
        times = []
        for _ in range(num_runs):
            start = time.perf_counter()
            interpreter.invoke()
            times.append((time.perf_counter() - start) * 1e3)
        opcode = base.operatorCodes[op.opcodeIndex]
        dtype = tc._TYPE_NAMES[graph.tensors[feeds[0]].type] if feeds else '-'
        rows.append({'index': i, 'op': tc._opcode_name(opcode),
                     'dtype': dtype, 'stage': _stage(name), 'name': name,
                     'ms': float(np.median(times))})
    graph.operators = operators
    return rows


def summarize_profile(rows, top=12):
    """Totals per stage and per op type, and the slowest ops."""
    stages = {s: 0.0 for s in STAGE_ORDER}
    kinds = {}
    for r in rows:
        stages[r['stage']] = stages.get(r['stage'], 0.0) + r['ms']
        key = f'{r["op"]}({r["dtype"]})'
        kinds[key] = kinds.get(key, 0.0) + r['ms']
    slow = sorted(rows, key=lambda r: -r['ms'])[:top]
    return {'stages_ms': stages,
            'op_types_ms': dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
            'slowest': slow, 'sum_ms': sum(r['ms'] for r in rows)}


def benchmark(path, num_threads=2, num_runs=50, warmup_runs=5,
              use_xnnpack=True, input_dir=None, profile=False):
    """Everything latency.py reports for one model, as a dict."""
    with open(path, 'rb') as f:
        model = f.read()
    inputs = load_inputs(model, input_dir)
    result = {'model': os.path.abspath(path), 'size_bytes': len(model),
              'sha256': hashlib.sha256(model).hexdigest(),
              'threads': num_threads,
              'delegate': 'XNNPACK' if use_xnnpack else 'none (builtin)',
              'inputs': (f'{len(inputs)} images from {input_dir}'
                         if input_dir else 'random')}
    try:
        from maskconver_tf.serving import tflite_conversion as tc
        meta = tc.read_tflite_metadata(model)
        result['quant_type'] = meta.get('quant_type')
        result['merge_stride'] = meta.get('merge_stride')
    except (KeyError, ValueError):
        pass
    result.update(time_model(model, inputs, num_threads, use_xnnpack,
                             num_runs, warmup_runs))
    if profile:
        rows = op_profile(model, inputs, num_threads, use_xnnpack)
        result['profile'] = summarize_profile(rows)
        result['ops'] = rows
    return result


def format_result(r):
    lines = [
        f'model {r["model"]} ({r["size_bytes"] / 1e6:.2f} MB, sha256 '
        f'{r["sha256"][:16]}), quant {r.get("quant_type")}',
        f'threads {r["threads"]}, delegate {r["delegate"]}, inputs '
        f'{r["inputs"]}',
        f'init {r["init_ms"]:.1f} ms, first inference {r["first_ms"]:.2f} ms, '
        f'warm-up mean {r["warmup_mean_ms"]:.2f} ms ({r["warmup_runs"]} runs)',
        f'mean {r["mean_ms"]:.2f} ms, p50 {r["p50_ms"]:.2f} ms, p90 '
        f'{r["p90_ms"]:.2f} ms, min {r["min_ms"]:.2f} ms over '
        f'{r["num_runs"]} runs '
        f'({1e3 / r["mean_ms"]:.1f} FPS)']
    if 'profile' in r:
        p = r['profile']
        total = p['sum_ms'] or 1.0
        lines.append(f'per-op profile (ops timed alone, sum {total:.2f} ms):')
        for stage, ms in p['stages_ms'].items():
            lines.append(f'  stage {stage:16s} {ms:8.2f} ms '
                         f'({100 * ms / total:4.1f}%)')
        for kind, ms in list(p['op_types_ms'].items())[:10]:
            lines.append(f'  op {kind:28s} {ms:8.2f} ms')
        for row in p['slowest'][:8]:
            lines.append(f'  slow #{row["index"]:3d} '
                         f'{row["op"]}({row["dtype"]}) {row["ms"]:.2f} ms '
                         f'{row["name"][:70]}')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tflite', required=True, help='.tflite model')
    parser.add_argument('--num_threads', type=int, default=2)
    parser.add_argument('--num_runs', type=int, default=50)
    parser.add_argument('--warmup_runs', type=int, default=5)
    parser.add_argument('--input_dir', default=None,
                        help='folder of .jpg/.png images used as inputs')
    parser.add_argument('--no_xnnpack', action='store_true',
                        help='builtin kernels only (no default delegate)')
    parser.add_argument('--op_profile', action='store_true',
                        help='time every op alone; stage and op breakdown')
    parser.add_argument('--json', default=None, help='write the result here')
    parser.add_argument('--record', default=None, metavar='TITLE',
                        help='append a section to benchmarks/RESULTS.md')
    args = parser.parse_args(argv)
    if not os.path.exists(args.tflite):
        sys.exit(f'latency: {args.tflite} does not exist')
    result = benchmark(args.tflite, args.num_threads, args.num_runs,
                       args.warmup_runs, not args.no_xnnpack, args.input_dir,
                       args.op_profile)
    text = format_result(result)
    print(text)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)
    if args.record:
        from benchmarks import results_io
        results_io.append_section(args.record, ['```'] + text.split('\n')
                                  + ['```'])


if __name__ == '__main__':
    main()
