"""Times the train step (with and without XLA) and the input pipeline.

    python benchmarks/train_throughput.py [--experiment NAME]
        [--image_size 256] [--batch_size 8] [--steps 10] [--warmup 2]
        [--xla_steps 3] [--skip_pipeline] [--no_record]

- Input pipeline: `task.build_inputs` of the experiment's task (default
  `maskconver_mobilenet_mh_coco`: TFRecord decoder + its training parser:
  flip, scale jitter 0.1-1.9, 201 heatmap channels, K 50, stuff centers
  >= 1024 px, full-size mask targets; batching, prefetch) on shapes
  TFRecords (JPEG images, PNG masks) generated at `--image_size`; images/s
  over `--pipeline_batches` batches after one warm-up batch. The shapes
  categories keep their ids as raw channels of 201 (a filler category takes
  id 200), as COCO's do.
- Train step: the same task's model at `--image_size`, its own
  `train_step` and optimizer in a `tf.function`, on one fixed batch of
  that pipeline: images/s = batch / median step time, without and with
  `jit_compile`, with the experiment's own optimizer.
- Peak RSS of the process (resource.getrusage) after each phase.

Goal (issue 5): the pipeline delivers at least 2x the images/s the
(non-XLA) step consumes. Both are measured alone; in training they share
the same cores. Prints a table and appends it to benchmarks/RESULTS.md
unless --no_record.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import results_io  # noqa: E402

DEFAULT_EXPERIMENT = 'maskconver_mobilenet_mh_coco'
# Raw label mode: channels = ids, so the largest id gives the 201 channels.
FILLER_CATEGORY = {'id': 200, 'name': 'unused', 'isthing': 0,
                   'color': [0, 0, 0], 'supercategory': 'filler'}


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def make_records(root, num_images, image_size):
    """Shapes TFRecords; returns (file pattern, 201-channel categories JSON)."""
    from maskconver_tf.data import create_tfrecords, shapes
    json_path = shapes.generate_dataset(os.path.join(root, 'shapes'),
                                        num_images, image_size=image_size,
                                        seed=0)
    create_tfrecords.convert(os.path.join(root, 'shapes', 'images'), json_path,
                             os.path.join(root, 'shapes', 'panoptic'),
                             os.path.join(root, 'records', 'train'),
                             num_shards=2)
    categories = os.path.join(root, 'categories_201.json')
    with open(categories, 'w') as f:
        json.dump({'categories': shapes.CATEGORIES + [FILLER_CATEGORY]}, f)
    return os.path.join(root, 'records', 'train*'), categories


def experiment_params(name, records, categories, num_images, image_size,
                      batch_size):
    """A COCO experiment at the benchmark size on the shapes data."""
    from official.core import exp_factory
    params = exp_factory.get_exp_config(name)
    params.task.dataset = categories
    params.task.label_mode = 'raw'
    params.task.model.input_size = [image_size, image_size, 3]
    params.task.model.panoptic_generator.output_size = [image_size, image_size]
    params.task.train_data.input_path = records
    params.task.train_data.global_batch_size = batch_size
    # The recipe's 10000 would only hold repeats of the few generated records.
    params.task.train_data.shuffle_buffer_size = num_images
    return params


def time_pipeline(task, data_config, num_batches):
    """images/s of the tf.data pipeline alone."""
    dataset = task.build_inputs(data_config)
    iterator = iter(dataset)
    next(iterator)  # start-up: threads, file opening, first parse
    t0 = time.perf_counter()
    for _ in range(num_batches):
        images, _ = next(iterator)
    elapsed = time.perf_counter() - t0
    return num_batches * int(images.shape[0]) / elapsed, elapsed


def time_train_step(task, params, batch, jit_compile, warmup, steps):
    """Returns (median s/step, first-call s, final loss)."""
    import tensorflow as tf
    import tf_keras
    tf_keras.utils.set_random_seed(0)
    model = task.build_model()
    optimizer = task.create_optimizer(params.trainer.optimizer_config,
                                      params.runtime)
    from official.modeling import optimization
    # As Model Garden's Trainer does: the EMA optimizer needs its copy first.
    if isinstance(optimizer, optimization.ExponentialMovingAverage):
        optimizer.shadow_copy(model)

    def step_fn(inputs):
        return task.train_step(inputs, model, optimizer)

    step = tf.function(step_fn, jit_compile=jit_compile)
    t0 = time.perf_counter()
    loss = float(step(batch)[task.loss])
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        float(step(batch)[task.loss])
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = float(step(batch)[task.loss])
        times.append(time.perf_counter() - t0)
    return statistics.median(times), first, loss


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--experiment', default=DEFAULT_EXPERIMENT)
    parser.add_argument('--image_size', type=int, default=256)
    parser.add_argument('--batch_size', type=int, default=8)
    parser.add_argument('--steps', type=int, default=10,
                        help='timed steps without XLA')
    parser.add_argument('--warmup', type=int, default=2,
                        help='untimed steps (the first traces / compiles)')
    parser.add_argument('--xla_steps', type=int, default=3,
                        help='timed steps with XLA (slow on CPU); 0 skips')
    parser.add_argument('--num_images', type=int, default=64)
    parser.add_argument('--pipeline_batches', type=int, default=20)
    parser.add_argument('--skip_pipeline', action='store_true',
                        help='time the train step only')
    parser.add_argument('--no_record', action='store_true')
    args = parser.parse_args(argv)

    import tensorflow as tf
    from official.core import task_factory
    from maskconver_tf import registry_imports  # noqa: F401
    rss = {'start': peak_rss_gib()}
    load_start = os.getloadavg()[0]

    name = args.experiment
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        num_images = max(args.num_images, args.batch_size)
        records, categories = make_records(tmp, num_images, args.image_size)
        data_s = time.perf_counter() - t0
        params = experiment_params(name, records, categories, num_images,
                                   args.image_size, args.batch_size)
        task = task_factory.get_task(params.task)
        pipe_ips = None
        if not args.skip_pipeline:
            pipe_ips, _ = time_pipeline(task, params.task.train_data,
                                        args.pipeline_batches)
            rss['pipeline'] = peak_rss_gib()
        batch = next(iter(task.build_inputs(params.task.train_data)))

    step_s, first_s, loss = time_train_step(task, params, batch, False,
                                            args.warmup, args.steps)
    rss['step'] = peak_rss_gib()
    rows_data = [('no', step_s, first_s, loss, args.steps)]
    xla_error = None
    if args.xla_steps:
        try:
            xla_s, xla_first, xla_loss = time_train_step(
                task, params, batch, True, min(args.warmup, 1),
                args.xla_steps)
            rss['xla step'] = peak_rss_gib()
            rows_data.append(('yes', xla_s, xla_first, xla_loss,
                              args.xla_steps))
        except tf.errors.InvalidArgumentError as e:
            # Recorded, not fatal: which op this device's XLA cannot compile.
            xla_error = e.message.split('\n')[0]

    optimizer = params.trainer.optimizer_config.optimizer.type
    rows = [
        f'Model `{name}` at {args.image_size} px, batch {args.batch_size}, '
        f'{optimizer} (the experiment\'s optimizer), TF {tf.__version__}, '
        'CPU.',
        '',
        '| train step | XLA | timed steps | median step (s) | images/s | '
        'first call (s) | loss |',
        '| --- | --- | --- | --- | --- | --- | --- |',
    ]
    for xla, s, first, final_loss, n in rows_data:
        rows.append(f'| {name} | {xla} | {n} | {s:.3f} | '
                    f'{args.batch_size / s:.2f} | {first:.1f} | '
                    f'{final_loss:.3f} |')
    if xla_error:
        rows += ['', f'XLA (jit_compile) on this device failed: {xla_error}']
    if pipe_ips is not None:
        ratio = pipe_ips / (args.batch_size / step_s)
        rows += [
            '',
            '| input pipeline | batches | images/s | x step (no XLA) | goal |',
            '| --- | --- | --- | --- | --- |',
            f'| shapes TFRecords (JPEG), decoder + {name} train parser '
            '(flip, scale jitter, 201 channels) | '
            f'{args.pipeline_batches} | {pipe_ips:.1f} | {ratio:.1f}x | '
            f'>= 2x {"(met)" if ratio >= 2 else "(NOT met)"} |',
        ]
    rows += [
        '',
        '| peak RSS (GiB) | ' + ' | '.join(rss) + ' |',
        '| --- | ' + ' | '.join('---' for _ in rss) + ' |',
        '| | ' + ' | '.join(f'{v:.2f}' for v in rss.values()) + ' |',
        '',
        f'{num_images} shapes images at {args.image_size} px generated '
        f'and converted in {data_s:.1f} s (not counted). Peak RSS is '
        'cumulative over the phases of one process. 1-min load average '
        f'{load_start:.1f} at start, {os.getloadavg()[0]:.1f} at the end '
        f'({os.cpu_count()} cores): other jobs inflate the times when it '
        'exceeds the core count.',
    ]
    print('\n'.join(rows))
    if not args.no_record:
        results_io.append_section('Train throughput', rows)


if __name__ == '__main__':
    main()
