r"""LiteRT time of one int8 depthwise conv per kernel shape (the split tiles).

Example:
  python benchmarks/depthwise_tiles.py [--size 32] [--channels 256] \
    [--kernels 3x3,4x4,4x3,5x5,7x1,7x7] [--num_runs 200] [--record]

Why: the export splits the heads' 7x7 depthwise convs into smaller tiles
(`graph_rewrites.split_depthwise_conv`) because XNNPACK's int8 kernel for
7x7 is slow. This times each tile shape alone (VALID conv producing a
size x size x channels output, full int8, XNNPACK, lowest median of three
interpreters), plus
an int8 ADD of two such tensors (the cost of each extra tile), so a tiling's
cost can be added up.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import latency  # noqa: E402
from maskconver_tf.serving import tflite_conversion as tc  # noqa: E402

DEFAULT_KERNELS = '3x3,4x4,4x3,3x4,5x5,5x2,2x5,2x2,7x1,1x7,7x7'


def _int8_model(fn, input_shapes):
    specs = [tf.TensorSpec(s, tf.float32) for s in input_shapes]
    concrete = fn.get_concrete_function(*specs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete],
                                                                fn)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.RandomState(0)
    converter.representative_dataset = lambda: (
        [rng.randn(*s).astype(np.float32) for s in input_shapes]
        for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def _median_ms(model, num_threads, num_runs, repeats=3):
    """Lowest of `repeats` medians, each from a fresh interpreter.

    On this 2-core VM a 2-thread interpreter sometimes runs as if it had one
    thread (medians 2x apart between fresh interpreters of the same model).
    """
    detail = tc.make_interpreter(model, 1).get_input_details()[0]
    inputs = [np.zeros(detail['shape'], detail['dtype'])]
    return min(latency.time_model(model, inputs, num_threads, True, num_runs,
                                  warmup_runs=10)['p50_ms']
               for _ in range(repeats))


def depthwise_ms(kh, kw, size, channels, num_threads, num_runs):
    kernel = tf.constant(np.random.RandomState(kh * 10 + kw).randn(
        kh, kw, channels, 1).astype(np.float32) * 0.1)
    fn = tf.function(lambda x: tf.nn.depthwise_conv2d(
        x, kernel, [1, 1, 1, 1], 'VALID'))
    shape = [1, size + kh - 1, size + kw - 1, channels]
    return _median_ms(_int8_model(fn, [shape]), num_threads, num_runs)


def add_ms(size, channels, num_threads, num_runs):
    fn = tf.function(lambda a, b: a + b)
    shape = [1, size, size, channels]
    return _median_ms(_int8_model(fn, [shape, shape]), num_threads, num_runs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=32,
                        help='output height = width (32: heads at 256 px)')
    parser.add_argument('--channels', type=int, default=256)
    parser.add_argument('--kernels', default=DEFAULT_KERNELS,
                        help='comma-separated HxW kernel shapes')
    parser.add_argument('--num_threads', type=int, default=2)
    parser.add_argument('--num_runs', type=int, default=200)
    parser.add_argument('--record', action='store_true',
                        help='append the table to benchmarks/RESULTS.md')
    args = parser.parse_args(argv)
    try:
        kernels = [tuple(int(v) for v in k.split('x'))
                   for k in args.kernels.split(',')]
    except ValueError:
        parser.error(f'--kernels {args.kernels!r}: expected HxW,HxW,...')
    rows = []
    for kh, kw in kernels:
        ms = depthwise_ms(kh, kw, args.size, args.channels, args.num_threads,
                          args.num_runs)
        rows.append((f'DEPTHWISE_CONV_2D {kh}x{kw}', kh * kw, ms))
        print(f'{kh}x{kw}: {ms:.3f} ms', flush=True)
    ms = add_ms(args.size, args.channels, args.num_threads, args.num_runs)
    rows.append(('ADD', 0, ms))
    print(f'ADD: {ms:.3f} ms', flush=True)
    lines = ['| op | taps | median ms |', '| --- | --- | --- |']
    lines += [f'| {name} | {taps or ""} | {ms:.3f} |' for name, taps, ms in rows]
    print('\n'.join(lines))
    if args.record:
        from benchmarks import results_io
        results_io.append_section(
            f'int8 depthwise tiles, XNNPACK, {args.num_threads} threads '
            f'(output {args.size}x{args.size}x{args.channels})',
            lines + ['', 'One op per model, full int8, random inputs; a '
                     'tiling of a k x k kernel costs the sum of its tiles '
                     'plus one ADD per extra tile.'])


if __name__ == '__main__':
    main()
