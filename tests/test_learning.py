"""The model learns: a short run on a few dozen shapes images at 64 px.

Drives the real task (build_model, build_inputs, train_step,
validation_step, aggregate/reduce logs) in-process, as Model Garden's
trainer does, and asserts numbers: the training loss halves and in-loop PQ
on the same images is clearly above zero.
"""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.modeling import optimization
from official.modeling import hyperparams

from maskconver_tf import registry_imports  # noqa: F401
from maskconver_tf.data import create_tfrecords
from maskconver_tf.data import shapes
from maskconver_tf.tasks import maskconver as maskconver_task

IMAGE_SIZE = 64
NUM_IMAGES = 32
BATCH = 8
STEPS = 160


@pytest.fixture(scope='module')
def tiny_records(tmp_path_factory):
    root = tmp_path_factory.mktemp('learn')
    json_path = shapes.generate_dataset(str(root / 'data'), NUM_IMAGES,
                                        image_size=IMAGE_SIZE, seed=5)
    prefix = str(root / 'records' / 'train')
    create_tfrecords.convert(str(root / 'data' / 'images'), json_path,
                             str(root / 'data' / 'panoptic'), prefix)
    return prefix + '*'


def _params(records):
    params = exp_factory.get_exp_config('maskconver_shapes')
    s = IMAGE_SIZE
    overrides = {
        'task': {
            # 160 steps are too few for momentum 0.99 moving statistics to
            # reach the batch statistics; eval would run on stale ones.
            'model': {'input_size': [s, s, 3],
                      'norm_activation': {'norm_momentum': 0.9},
                      'panoptic_generator': {'output_size': [s, s],
                                             'small_area_threshold': 4}},
            'train_data': {'input_path': records, 'global_batch_size': BATCH,
                           'shuffle_buffer_size': NUM_IMAGES,
                           'parser': {'aug_scale_min': 1.0,
                                      'aug_scale_max': 1.0,
                                      'min_stuff_area': 16}},
            'validation_data': {'input_path': records,
                                'global_batch_size': BATCH,
                                'drop_remainder': True,
                                'parser': {'min_stuff_area': 16}},
        },
        'trainer': {'optimizer_config': {
            'optimizer': {'type': 'adam'},
            'learning_rate': {'type': 'constant',
                              'constant': {'learning_rate': 2e-3}},
            'warmup': {'type': 'linear', 'linear': {'warmup_steps': 10}}}},
    }
    return hyperparams.override_params_dict(params, overrides, is_strict=True)


def test_short_run_halves_loss_and_reaches_pq(tiny_records):
    tf_keras.utils.set_random_seed(1)
    params = _params(tiny_records)
    task = maskconver_task.MaskConverTask(params.task)
    model = task.build_model()
    opt_factory = optimization.OptimizerFactory(
        params.trainer.optimizer_config)
    optimizer = opt_factory.build_optimizer(opt_factory.build_learning_rate())
    @tf.function
    def train_step(batch):
        return task.train_step(batch, model, optimizer)

    dataset = iter(task.build_inputs(params.task.train_data).repeat())
    losses = [float(train_step(next(dataset))['loss']) for _ in range(STEPS)]
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    assert np.all(np.isfinite(losses))
    assert last < 0.5 * first, (first, last)

    @tf.function
    def validation_step(batch):
        return task.validation_step(batch, model)

    task.build_metrics(training=False)
    state = None
    for batch in task.build_inputs(params.task.validation_data):
        state = task.aggregate_logs(state, validation_step(batch))
    result = task.reduce_aggregated_logs(state)
    pq = result['panoptic_quality/All_pq']
    # Measured 48.1 / 27.4 / 75.7 (All / Things / Stuff) on 2026-11-25; the
    # bounds leave room for thread-order noise, not for a broken model.
    assert pq > 0.3, result
    assert result['panoptic_quality/Things_pq'] > 0.1, result
    assert result['panoptic_quality/Stuff_pq'] > 0.5, result
    print(f'loss {first:.3f} -> {last:.3f}; in-loop PQ {result}')
