r"""TF CPU latency of an exported SavedModel's serving signature.

    python benchmarks/tf_latency.py --saved_model EXPORT/saved_model \
        [--num_threads 2] [--num_runs 20] [--warmup_runs 3] [--json OUT]

The reference point next to LiteRT: the same exported graph (an export with
`--input_type tflite`: a float32 [1, H, W, 3] preprocessed image) run by
TensorFlow itself, intra-op threads = --num_threads, inter-op 1, random
inputs in the range of preprocessed images. Prints mean / p50 / p90 / min
(ms) of the timed runs after the warm-up (the first call traces).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def time_saved_model(path, num_threads=2, num_runs=20, warmup_runs=3,
                     seed=0):
    """Dict of timings (ms) of `serving_default` on one random image."""
    import numpy as np
    import tensorflow as tf
    from benchmarks import latency
    # Threads are fixed before TF runs its first op.
    tf.config.threading.set_intra_op_parallelism_threads(num_threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    t = time.perf_counter()
    serve = tf.saved_model.load(path).signatures['serving_default']
    load_ms = (time.perf_counter() - t) * 1e3
    (name, spec), = serve.structured_input_signature[1].items()
    shape = [1 if d is None else int(d) for d in spec.shape]
    rng = np.random.RandomState(seed)
    image = tf.constant(rng.uniform(-2.0, 2.5, shape).astype(
        spec.dtype.as_numpy_dtype))

    def run():
        t = time.perf_counter()
        outputs = serve(**{name: image})
        for value in outputs.values():
            value.numpy()
        return (time.perf_counter() - t) * 1e3

    first = run()
    for _ in range(warmup_runs):
        run()
    times = [run() for _ in range(num_runs)]
    return {'saved_model': os.path.abspath(path), 'threads': num_threads,
            'input_shape': shape, 'load_ms': load_ms, 'first_ms': first,
            **latency.run_statistics(times)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--saved_model', required=True)
    parser.add_argument('--num_threads', type=int, default=2)
    parser.add_argument('--num_runs', type=int, default=20)
    parser.add_argument('--warmup_runs', type=int, default=3)
    parser.add_argument('--json', default=None, help='write the result here')
    args = parser.parse_args(argv)
    if not os.path.isdir(args.saved_model):
        sys.exit(f'tf_latency: {args.saved_model} is not a SavedModel '
                 'directory')
    r = time_saved_model(args.saved_model, args.num_threads, args.num_runs,
                         args.warmup_runs)
    print(f'TF {r["saved_model"]} {r["input_shape"]}, {r["threads"]} '
          f'threads: mean {r["mean_ms"]:.2f} ms, p50 {r["p50_ms"]:.2f}, '
          f'p90 {r["p90_ms"]:.2f}, min {r["min_ms"]:.2f} over '
          f'{r["num_runs"]} runs (first {r["first_ms"]:.0f} ms, load '
          f'{r["load_ms"]:.0f} ms)')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(r, f, indent=1)


if __name__ == '__main__':
    main()
