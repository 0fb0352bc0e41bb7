r"""LiteRT latency of a .tflite: whole model, and per op / per stage.

Example:
  python benchmarks/latency.py --tflite /tmp/m.tflite --num_threads 2 \
    --num_runs 50 [--input_dir images/] [--no_xnnpack] [--op_profile] \
    [--litert_benchmark] [--record "title"]

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

--litert_benchmark also runs LiteRT's own benchmark tool, the Python twin of
its C++ benchmark_model shipped in the pinned wheel
(`ai_edge_litert.tools.benchmark_litert_model`), on the same file, right
after our loop, and reports its init, first, mean, median, p5, p95 and min
next to ours, the ratios ours / theirs, and a flag (`litert_comparison.
disagree` in the JSON, a DISAGREE line in the printout) when our mean or p50
is off its mean or median by more than 10% of its value. The init ratio is
shown but not part of the flag: it is a single sample of different work (see
below). Off by default: it doubles the timing time and, on a shared machine,
the two loops do not see the same load.

How the tool is run: imported, not a subprocess. Its own `parse_args`
reads the flags `--model --num_threads --num_runs --warmup_runs` (every
other flag keeps its default: CPU accelerator only, first signature) and
`run_benchmark` returns its result dict; its printed report is discarded
(the numbers are in ours) and its `sys.exit` on errors becomes a
RuntimeError. It gets one more warm-up run than --warmup_runs, since our
untimed first inference precedes our warm-up runs.
What it runs: the LiteRT CompiledModel API (`CompiledModel.from_file` with
`HardwareAccelerator.CPU` and `CpuOptions(num_threads=N)`), so the same
thread count as ours. It has no delegate flag: its CPU accelerator uses its
default kernel mode, XNNPACK (the wheel logs "XNNPACK CPU accelerator
registered", and on a 2-conv model it ran at our XNNPACK speed, well above
our builtin one), which is our default too. With --no_xnnpack its
`create_model_options` is swapped for one that also sets
`CpuOptions(kernel_mode=CpuKernelMode.BUILTIN)`, LiteRT's builtin kernels,
the CompiledModel counterpart of our BUILTIN_WITHOUT_DEFAULT_DELEGATES; that
is the only change to the tool.

Known reasons the two may differ (read off the tool's code):
- API: ours is the TFLite `Interpreter` (XNNPACK as the interpreter's
  default delegate), theirs `CompiledModel` (XNNPACK as LiteRT's CPU
  accelerator); the two build the delegate with their own default options.
- Timed region: ours times `interpreter.invoke()`, with `set_tensor` (one
  input copy) before it, untimed; theirs times `run_by_name`, which maps
  TensorBuffers written once before warm-up, never rewritten and never read
  back. Whether the native run copies those buffers is not visible in its
  Python code.
- Inputs: ours are random in the range of preprocessed images, or the
  --input_dir images; theirs uniform in [-1, 1] (float) or random integers
  in [-128, 127] clipped to the dtype (integer inputs). The top-K / merge tail of full graphs is
  data dependent, so its time differs with the inputs.
- Init: ours is `Interpreter(model_content=...)` from bytes already in
  memory plus `allocate_tensors`; theirs `Options` + `CompiledModel.
  from_file` (reads the file; its Environment, which loads the GPU / NPU
  accelerators, is created before and not timed).
- Statistics: its median (`statistics.median`) and p5 / p95 (linear
  interpolation) match our p50 and numpy percentiles, but it rounds every
  time to 0.01 ms, so ratios of sub-millisecond models are coarse.
- Order: the tool runs after our loop, in the same process, so a change of
  load between the two shows up as a disagreement.
"""

import argparse
import contextlib
import glob
import hashlib
import importlib.metadata
import io
import json
import math
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
# Largest |ours / LiteRT's - 1| of mean and p50 still called agreement.
LITERT_TOLERANCE = 0.10
# Entries of the tool's result['latency'] we report.
LITERT_KEYS = ('init_ms', 'warmup_first_ms', 'avg_ms', 'median_ms', 'p5_ms',
               'p95_ms', 'min_ms', 'max_ms', 'std_ms', 'num_runs',
               'num_warmup_runs')


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


def litert_benchmark(path, num_threads=2, num_runs=50, warmup_runs=5,
                     use_xnnpack=True):
    """LiteRT's benchmark_litert_model on `path` (see the module docstring).

    Returns its latency entries (`LITERT_KEYS`, ms) and what it ran.
    """
    from ai_edge_litert.cpu_kernel_mode import CpuKernelMode
    from ai_edge_litert.tools import benchmark_litert_model as tool
    flags = ['--model', path, '--num_threads', str(num_threads),
             '--num_runs', str(num_runs), '--warmup_runs',
             str(warmup_runs + 1)]
    make_options = tool.create_model_options
    if not use_xnnpack:
        # The tool has no delegate flag: builtin kernels, as ours.
        def make_options_builtin(args, options, cpu_options, accelerators):
            return options(hardware_accelerators=accelerators,
                           cpu_options=cpu_options(
                               num_threads=args.num_threads,
                               kernel_mode=CpuKernelMode.BUILTIN))
        tool.create_model_options = make_options_builtin
    # The tool's parse_args reads sys.argv only; going through it keeps the
    # tool's own defaults for every flag we leave out.
    argv, sys.argv = sys.argv, ['benchmark_litert_model'] + flags
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            out = tool.run_benchmark(tool.parse_args())
    except SystemExit as e:
        raise RuntimeError(
            f'benchmark_litert_model exited ({e.code}) with flags {flags}; '
            'its error is on stderr') from None
    finally:
        sys.argv = argv
        tool.create_model_options = make_options
    times = out.get('latency') if isinstance(out, dict) else None
    missing = [k for k in LITERT_KEYS if not isinstance(times, dict)
               or not isinstance(times.get(k), (int, float))]
    if missing:
        raise RuntimeError(
            f'benchmark_litert_model returned no numbers for {missing}: '
            f'expected a dict with "latency": {{{", ".join(LITERT_KEYS)}}}, '
            f'got {out!r}')
    version = importlib.metadata.version('ai-edge-litert')
    return {'tool': 'ai_edge_litert.tools.benchmark_litert_model '
                    f'(ai-edge-litert {version})',
            'api': 'CompiledModel',
            'delegate': ('XNNPACK (CPU accelerator default)' if use_xnnpack
                         else 'builtin (CpuKernelMode.BUILTIN)'),
            'threads': out.get('num_threads'),
            'accelerators': out.get('accelerators'),
            'fully_accelerated': out.get('fully_accelerated'),
            'inputs': 'random, written once',
            **{k: times[k] for k in LITERT_KEYS}}


def litert_disagrees(ours, theirs, tolerance=LITERT_TOLERANCE):
    """True when `ours` is off `theirs` by more than `tolerance` of theirs."""
    return not theirs > 0 or abs(ours / theirs - 1) > tolerance


def compare_with_litert(ours, theirs, tolerance=LITERT_TOLERANCE):
    """Ratios ours / theirs of mean, p50 and init; `disagree` (and
    `disagree_on`) when mean or p50 differ by more than `tolerance`.

    `ours` has mean_ms, p50_ms, init_ms (`time_model`); `theirs` avg_ms,
    median_ms, init_ms (`litert_benchmark`).
    """
    pairs = {'mean': (ours['mean_ms'], theirs['avg_ms']),
             'p50': (ours['p50_ms'], theirs['median_ms']),
             'init': (ours['init_ms'], theirs['init_ms'])}
    result = {f'{k}_ratio': a / b if b > 0 else math.inf
              for k, (a, b) in pairs.items()}
    off = [k for k in ('mean', 'p50') if litert_disagrees(*pairs[k],
                                                          tolerance)]
    result.update(tolerance=tolerance, disagree=bool(off), disagree_on=off)
    return result


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
              use_xnnpack=True, input_dir=None, profile=False,
              litert=False):
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
    if litert:
        result['litert_benchmark'] = litert_benchmark(
            path, num_threads, num_runs, warmup_runs, use_xnnpack)
        result['litert_comparison'] = compare_with_litert(
            result, result['litert_benchmark'])
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
    if 'litert_benchmark' in r:
        t, c = r['litert_benchmark'], r['litert_comparison']
        lines += [
            f'LiteRT benchmark_litert_model ({t["api"]}, {t["delegate"]}, '
            f'{t["threads"]} threads, inputs {t["inputs"]}): init '
            f'{t["init_ms"]:.1f} ms, first {t["warmup_first_ms"]:.2f} ms, '
            f'mean {t["avg_ms"]:.2f} ms, median {t["median_ms"]:.2f} ms, p5 '
            f'{t["p5_ms"]:.2f} ms, p95 {t["p95_ms"]:.2f} ms, min '
            f'{t["min_ms"]:.2f} ms over {t["num_runs"]} runs',
            f'ours / LiteRT: mean {c["mean_ratio"]:.3f}, p50 '
            f'{c["p50_ratio"]:.3f}, init {c["init_ratio"]:.3f}',
            (f'DISAGREE: ours and LiteRT\'s differ by more than '
             f'{c["tolerance"]:.0%} in {" and ".join(c["disagree_on"])} '
             '(reasons: benchmarks/latency.py docstring)' if c['disagree'] else
             f'mean and p50 agree with LiteRT\'s within '
             f'{c["tolerance"]:.0%}')]
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
    parser.add_argument('--litert_benchmark', action='store_true',
                        help="also run LiteRT's benchmark_litert_model on the "
                        'file (same threads and delegate) and compare')
    parser.add_argument('--json', default=None, help='write the result here')
    parser.add_argument('--record', default=None, metavar='TITLE',
                        help='append a section to benchmarks/RESULTS.md')
    args = parser.parse_args(argv)
    if not os.path.exists(args.tflite):
        sys.exit(f'latency: {args.tflite} does not exist')
    result = benchmark(args.tflite, args.num_threads, args.num_runs,
                       args.warmup_runs, not args.no_xnnpack, args.input_dir,
                       args.op_profile, args.litert_benchmark)
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
