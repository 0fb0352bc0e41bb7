"""Distribution and XLA tests of the real task, on CPU only.

- MirroredStrategy over 2 logical CPU devices (a subprocess: logical
  devices must be configured before TF initialises) against one device on
  the same global batch, with synchronized BN: the losses, the all-reduced
  gradients and the BN statistics after the task's own `train_step`, and
  both dice modes of the loss functions alone. The network runs in float64 there: at init its float32
  gradient is ill-conditioned (BN backward cancellation, norm ~1e3), and
  reordering the arithmetic alone moves it by 1e-3..1e-2 relative.
- MultiWorkerMirroredStrategy: two train-CLI workers on 127.0.0.1
  (TF_CONFIG) train 3 steps; both end with the same weights.
- The task's train step compiles with XLA (`jit_compile=True`) at the
  static shapes of `build_inputs` and matches the non-XLA step.

The mask BCE and dice normalise over the whole batch; the losses
all-reduce their sums and counts (`maskconver_losses.cross_replica_sum`),
so the mean of the replicas' losses is the global-batch loss and the
summed gradient is its gradient (the reference normalises per replica
instead, which makes the result depend on the replica count).

The file is also the driver: `python tests/test_distribution.py mirrored
RECORDS OUT.json`.
"""

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

# The TF imports are inside functions: this file is also the subprocess
# driver, which must configure logical devices before TF initialises.
# pylint: disable=g-import-not-at-top,protected-access

TIMEOUT = 900  # s; generous: other jobs share the 2 cores
SIZE = 64


def _params(records, batch, sync_bn=True, augment=False):
    """maskconver_shapes at 64 px on `records`."""
    from official.core import exp_factory
    from maskconver_tf import registry_imports  # noqa: F401  pylint: disable=unused-import
    params = exp_factory.get_exp_config('maskconver_shapes')
    model = params.task.model
    model.input_size = [SIZE, SIZE, 3]
    model.panoptic_generator.output_size = [SIZE, SIZE]
    model.norm_activation.use_sync_bn = sync_bn
    data = params.task.train_data
    data.input_path = records
    data.global_batch_size = batch
    data.parser.min_stuff_area = 16
    data.seed = 7  # the same records in the same order in every process
    if not augment:
        data.parser.aug_rand_hflip = False
        data.parser.aug_scale_min = data.parser.aug_scale_max = 1.0
    return params


def _rel(a, b):
    """||a - b|| / ||b|| over lists of arrays."""
    num = np.sqrt(sum(float(np.sum((np.asarray(x, np.float64) - y) ** 2))
                      for x, y in zip(a, b)))
    den = np.sqrt(sum(float(np.sum(np.asarray(y, np.float64) ** 2)) for y in b))
    return num / max(den, 1e-30)


def _mirrored_driver(records, out_path):
    """2-replica MirroredStrategy vs one device; writes a JSON of numbers."""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import tf_keras
    from official.core import task_factory

    # float64 weights and activations: the gradient at init is so
    # ill-conditioned in float32 (BN backward cancellation; norm ~1e3) that
    # merely reordering the arithmetic moves it by ~1e-3..1e-2 relative
    # (measured), which would mask real differences. The losses stay
    # float32 (build_losses casts), as in training.
    tf_keras.backend.set_floatx('float64')
    params = _params(records, batch=4)
    task = task_factory.get_task(params.task)
    images, labels = next(iter(task.build_inputs(params.task.train_data)))
    tf_keras.utils.set_random_seed(0)
    model1 = task.build_model()
    init = model1.get_weights()
    strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    with strategy.scope():
        model2 = task.build_model()
        model2.set_weights(init)
        opt2 = tf_keras.optimizers.SGD(learning_rate=1.0)
        metrics2 = task.build_metrics(training=True)
    batch_norms = [layer for layer in model2._flatten_layers()
                   if 'BatchNormalization' in type(layer).__name__]

    def shard(tree, i):
        def take(x):
            return x[2 * i:2 * i + 2]
        return tf.nest.map_structure(take, tree)

    # One device: the full batch through the network (global BN statistics),
    # its losses and their gradient.
    @tf.function
    def single_grads(images, labels):
        with tf.GradientTape() as tape:
            outputs = task._forward_train(model1, images, labels)
            full = task.build_losses(labels, outputs, model1.losses)
        grads = tape.gradient(full['total_loss'], model1.trainable_variables)
        return full, grads

    def replica_inputs(ctx):
        return shard((images, labels), ctx.replica_id_in_sync_group)

    dist_inputs = strategy.experimental_distribute_values_from_function(
        replica_inputs)

    def replica_step(inputs):
        return task.train_step(inputs, model2, opt2, metrics2)

    # Two replicas: the task's own train_step (SGD lr 1, no momentum: the
    # update is minus the all-reduced gradient).
    @tf.function
    def mirrored_step():
        return strategy.run(replica_step, args=(dist_inputs,))

    full, grads = single_grads(images, labels)
    trainable = {id(v) for v in model1.trainable_variables}
    is_trainable = [id(v) in trainable for v in model1.weights]
    stats0 = [a for a, t in zip(init, is_trainable) if not t]
    stats1 = [a for a, t in zip(model1.get_weights(), is_trainable) if not t]
    grads = [g.numpy() for g in grads]
    logs = mirrored_step()
    w2 = model2.get_weights()
    grads2 = [b - a for a, b, t in zip(w2, init, is_trainable) if t]
    stats2 = [a for a, t in zip(w2, is_trainable) if not t]
    replica_vars = [strategy.experimental_local_results(v)
                    for v in model2.weights]
    result = {
        'num_batch_norm': len(batch_norms),
        'num_sync_batch_norm': sum(bool(getattr(b, 'synchronized', False))
                                   for b in batch_norms),
        'single_full': {k: float(v) for k, v in full.items()},
        'replica_means': {m.name: float(m.result()) for m in metrics2},
        'replica_totals': [float(v) for v in
                           strategy.experimental_local_results(
                               logs[task.loss])],
        'dice_modes': _loss_functions_check(strategy, labels, shard),
        'replicas_equal': bool(all(np.array_equal(a.numpy(), b.numpy())
                                   for a, b in replica_vars)),
        'grad_norm': float(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2)
                                       for g in grads))),
        'grad_rel_err': _rel(grads2, grads),
        'weights_dtype': model2.trainable_variables[0].dtype.name,
        'stats_changed': _rel(stats1, stats0),
        'stats_rel_err': _rel([a - b for a, b in zip(stats2, stats0)],
                              [a - b for a, b in zip(stats1, stats0)]),
    }
    with open(out_path, 'w') as f:
        json.dump(result, f, indent=1)


def _loss_functions_check(strategy, labels, shard):
    """BCE and both dice modes: 2 replicas (mean, gradient sum) vs 1.

    Random logits over the batch's real targets; returns, per dice mode,
    the one-device loss and gradient and the 2-replica mean loss and
    concatenated gradients.
    """
    import tensorflow as tf
    from maskconver_tf.losses import maskconver_losses as ml
    masks = labels['masks']
    logits = tf.random.stateless_normal(
        [masks.shape[0], 16, 16, masks.shape[-1]], seed=[1, 2]) * 3.0
    args = (labels['masks'], labels['mask_weights'], labels['padding_mask'])

    def loss(x, lab, mode):
        return (ml.mask_bce_loss(x, *lab)
                + ml.dice_loss(x, *lab, mode=mode))

    out = {}
    for mode in ('global', 'per_mask'):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            single = loss(logits, args, mode)
        grad = tape.gradient(single, logits)

        def replica_fn(mode=mode):
            ctx = tf.distribute.get_replica_context()
            x, lab = shard((logits, args), ctx.replica_id_in_sync_group)
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = loss(x, lab, mode)
                # Each replica descends value / replicas; the sum is the
                # update.
                scaled = value / 2.0
            return value, tape.gradient(scaled, x)

        values, grads = tf.function(lambda fn=replica_fn: strategy.run(fn))()
        values = strategy.experimental_local_results(values)
        grads = strategy.experimental_local_results(grads)
        out[mode] = {
            'single': float(single),
            'replica_mean': float(sum(float(v) for v in values) / 2.0),
            'grad_rel_err': _rel([tf.concat(grads, 0).numpy()],
                                 [grad.numpy()]),
            'grad_norm': float(tf.norm(grad)),
        }
    return out


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1')
    env.pop('TF_CONFIG', None)
    env.update(extra)
    return env


@pytest.fixture(scope='module')
def records(tmp_path_factory):
    from maskconver_tf.data import create_tfrecords
    from maskconver_tf.data import shapes
    root = tmp_path_factory.mktemp('dist_data')
    json_path = shapes.generate_dataset(str(root / 'data'), 8, image_size=SIZE,
                                        seed=11)
    report = create_tfrecords.convert(
        str(root / 'data' / 'images'), json_path,
        str(root / 'data' / 'panoptic'), str(root / 'rec' / 'train'),
        num_shards=2)
    return str(root / 'rec' / 'train*')


@pytest.fixture(scope='module')
def background(records, tmp_path_factory):
    """Starts the mirrored driver and the two MWMS workers together."""
    root = tmp_path_factory.mktemp('dist_runs')
    procs = {}

    def start(name, cmd, env):
        log = open(root / f'{name}.log', 'w')  # pylint: disable=consider-using-with
        procs[name] = (subprocess.Popen(cmd, stdout=log,
                                        stderr=subprocess.STDOUT, env=env),
                       log, root / f'{name}.log')

    start('mirrored', [sys.executable, os.path.abspath(__file__), 'mirrored',
                       records, str(root / 'mirrored.json')], _env())
    ports = _free_ports(2)
    cluster = {'worker': [f'127.0.0.1:{p}' for p in ports]}
    overrides = ','.join([
        f'task.train_data.input_path={records}',
        f'task.validation_data.input_path={records}',
        f'task.model.input_size=[{SIZE},{SIZE},3]',
        f'task.model.panoptic_generator.output_size=[{SIZE},{SIZE}]',
        'task.model.norm_activation.use_sync_bn=true',
        'task.train_data.parser.min_stuff_area=16',
        'task.train_data.global_batch_size=4',
        'trainer.train_steps=3', 'trainer.steps_per_loop=1',
        'trainer.checkpoint_interval=1', 'trainer.summary_interval=1',
        'runtime.distribution_strategy=multi_worker_mirrored'])
    for i in range(2):
        tf_config = json.dumps({'cluster': cluster,
                                'task': {'type': 'worker', 'index': i}})
        # TF's CheckpointManager writes a non-chief worker's checkpoints to
        # a fresh temporary directory (named in its log): TMPDIR keeps that
        # inside this test's directory.
        tmp = root / f'tmp{i}'
        tmp.mkdir()
        start(f'worker{i}', [
            sys.executable, '-m', 'maskconver_tf.train',
            '--experiment', 'maskconver_shapes', '--mode', 'train',
            '--model_dir', str(root / f'worker{i}'),
            '--params_override', overrides],
            _env(TF_CONFIG=tf_config, TMPDIR=str(tmp)))

    def wait(name):
        proc, log, path = procs[name]
        try:
            proc.wait(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        return proc.returncode, path.read_text()

    yield root, wait
    for proc, log, _ in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


# Requests `background` so that the subprocesses overlap this test (tracing
# is single-threaded; the machine has 2 cores).
# pylint: disable-next=unused-argument
def test_train_step_compiles_with_xla(records, background):
    import tensorflow as tf
    import tf_keras
    from official.core import task_factory

    # Seeded before the input pipeline too: its augmentation draws from the
    # global seed, so the batch (and the XLA / default gap) depended on which
    # tests the worker ran before.
    tf_keras.utils.set_random_seed(0)
    params = _params(records, batch=2, sync_bn=False)
    task = task_factory.get_task(params.task)
    dataset = task.build_inputs(params.task.train_data)
    for spec in tf.nest.flatten(dataset.element_spec):
        assert spec.shape.is_fully_defined(), spec
    batch = next(iter(dataset))
    tf_keras.utils.set_random_seed(0)  # the same init whatever the pipeline drew
    model = task.build_model()
    init = model.get_weights()

    def run(jit_compile):
        model.set_weights(init)
        optimizer = tf_keras.optimizers.SGD(learning_rate=0.1)
        optimizer.build(model.trainable_variables)
        step = tf.function(lambda x: task.train_step(x, model, optimizer),
                           jit_compile=jit_compile)
        loss = float(step(batch)[task.loss])
        return step, loss, model.get_weights()

    _, loss, weights = run(False)
    xla_step, xla_loss, xla_weights = run(True)
    hlo = xla_step.experimental_get_compiler_ir(batch)(stage='hlo')
    assert 'HloModule' in hlo
    assert not re.search(r'\[<=', hlo)  # no bounded-dynamic dimensions
    assert np.isfinite(xla_loss) and loss > 0.1
    assert xla_loss == pytest.approx(loss, rel=1e-4)
    trainable = {id(v) for v in model.trainable_variables}
    is_trainable = [id(v) in trainable for v in model.weights]

    def deltas(after, want_trainable):
        return [a - b for a, b, t in zip(after, init, is_trainable)
                if t == want_trainable]

    # BN moving statistics come from the forward pass alone: tight.
    stats = deltas(weights, False)
    assert max(float(np.abs(d).max()) for d in stats) > 1e-4
    assert _rel(deltas(xla_weights, False), stats) < 1e-4
    # Gradients at init are ill-conditioned in float32 (BN over 2 small
    # images): XLA and the default kernels are both ~2% from a float64
    # reference and 0.1-3% apart (measured), so the update gets a loose
    # bound; a wrong gradient would be off by O(1).
    update = deltas(weights, True)
    assert max(float(np.abs(d).max()) for d in update) > 1e-4
    assert _rel(deltas(xla_weights, True), update) < 0.05


def test_mirrored_two_devices_equals_one_device(background):
    root, wait = background
    code, log = wait('mirrored')
    assert code == 0, log[-4000:]
    r = json.loads((root / 'mirrored.json').read_text())
    # Every BN layer is synchronized (71 in this network).
    assert r['num_batch_norm'] > 50
    assert r['num_sync_batch_norm'] == r['num_batch_norm']
    # The replicas' mean losses are the global-batch losses of one device
    # (BN statistics are over the global batch in both); the per-replica
    # totals differ (each holds its shard's center loss).
    means = r['replica_means']
    for k, v in r['single_full'].items():
        assert means[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    assert np.mean(r['replica_totals']) == pytest.approx(
        r['single_full']['total_loss'], rel=1e-5)
    assert r['replica_totals'][0] != pytest.approx(r['replica_totals'][1])
    # The loss functions alone, both dice modes: loss and gradient.
    for mode, d in r['dice_modes'].items():
        assert d['replica_mean'] == pytest.approx(d['single'], rel=1e-5), mode
        assert d['grad_norm'] > 1e-4, mode
        assert d['grad_rel_err'] < 1e-5, (mode, d)
    # The all-reduced gradient (from the train_step's update) equals the
    # single-device gradient (float64 network: no round-off noise floor).
    assert r['weights_dtype'] == 'float64'
    assert r['grad_norm'] > 1.0
    assert r['grad_rel_err'] < 1e-6
    # Both replicas hold identical weights; BN moving statistics moved
    # exactly as on one device.
    assert r['replicas_equal']
    assert r['stats_changed'] > 1e-4
    assert r['stats_rel_err'] < 1e-5


def test_multi_worker_mirrored_two_processes(background):
    import tensorflow as tf
    root, wait = background
    results = [wait(f'worker{i}') for i in range(2)]
    saved = []
    for code, log in results:
        assert code == 0, log[-4000:]
        assert "'distribution_strategy': 'multi_worker_mirrored'" in log
        assert 'training until step 3' in log
        saved.append(dict(
            (int(step), path) for path, step in re.findall(
                r'^saved checkpoint to (\S+/ckpt-(\d+))\.', log, re.M)))
    # The chief (worker 0) writes to its model_dir, worker 1 to a temp dir.
    assert saved[0][3] == str(root / 'worker0' / 'ckpt-3')
    assert saved[1][3].startswith(str(root / 'tmp1'))

    def weights(path):
        reader = tf.train.load_checkpoint(path)
        out = {}
        for name in reader.get_variable_to_shape_map():
            value = np.asarray(reader.get_tensor(name))
            if value.dtype.kind in 'fiu':
                out[name] = value
        return out

    final = [weights(saved[i][3]) for i in range(2)]
    assert set(final[0]) == set(final[1])
    assert len(final[0]) > 100
    for name, value in final[0].items():
        np.testing.assert_allclose(final[1][name], value, rtol=1e-6,
                                   atol=1e-7, err_msg=name)
    assert int(final[0]['global_step/.ATTRIBUTES/VARIABLE_VALUE']) == 3
    # Training moved the weights between the first and the last checkpoint.
    first = weights(saved[0][1])
    moved = [n for n in first if 'kernel' in n and 'OPTIMIZER' not in n
             and not np.array_equal(first[n], final[0][n])]
    assert len(moved) > 50


if __name__ == '__main__':
    if len(sys.argv) != 4 or sys.argv[1] != 'mirrored':
        sys.exit('usage: test_distribution.py mirrored RECORDS OUT.json')
    _mirrored_driver(sys.argv[2], sys.argv[3])
