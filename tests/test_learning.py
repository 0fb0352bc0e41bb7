"""The model learns: a short run on a few dozen shapes images at 64 px.

Drives the real task (build_model, build_inputs, train_step,
validation_step, aggregate/reduce logs) in-process, as Model Garden's
trainer does, and asserts numbers: the training loss halves and in-loop PQ
on the same images is clearly above zero.
"""

import json
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


@pytest.fixture(scope='module')
def trained(tiny_records):
    """(params, task, model, per-step losses) after STEPS train steps."""
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
    return params, task, model, losses


def test_short_run_halves_loss_and_reaches_pq(trained):
    params, task, model, losses = trained
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


def test_int8_tflite_keeps_the_float_pq(trained, tmp_path):
    """Official PQ of the float and int8 .tflite of the trained model.

    A quantised post-processing tail scored 0 here (peak and area tests
    break in int8) while the float model scored like the checkpoint.
    """
    from maskconver_tf import evaluate as evaluate_lib
    from maskconver_tf import inference
    from maskconver_tf.serving import export_module
    from maskconver_tf.serving import tflite_conversion as tc

    params, task, model, _ = trained
    export_dir = str(tmp_path / 'export')
    export_module.export_saved_model(params, export_dir, model=model,
                                     batch_size=1, input_type='tflite')
    with open(os.path.join(export_dir, export_module.SIDECAR_NAME)) as f:
        meta = json.load(f)
    calibration = tc.calibration_images(params.task.train_data,
                                        [IMAGE_SIZE, IMAGE_SIZE], NUM_IMAGES)
    pq = {}
    for quant_type in ('none', 'int8_full_fp32_io'):
        path = str(tmp_path / f'{quant_type}.tflite')
        tc.export_tflite(os.path.join(export_dir, 'saved_model'), path,
                         quant_type=quant_type, calibration=calibration,
                         base_metadata=meta)
        result = evaluate_lib.evaluate(
            inference.load_predictor(path), str(tmp_path / quant_type),
            params=params, show_progress=False)
        pq[quant_type] = {g: result[g]['pq'] for g in ('All', 'Things',
                                                       'Stuff')}
    print(f'official PQ of the .tflite files: {pq}')
    assert pq['none']['All'] > 0.3, pq
    # Measured on 2026-11-25 with BatchNorm folded into the split 7x7
    # convs: float 46.7 / 24.2 / 76.7, int8 45.3 / 22.0 / 76.4 (All /
    # Things / Stuff); four more such models lost 0.0-2.2 All and kept
    # 80-98% of Things. Unfolded, int8 kept 29.9 / 6.3 / 61.4 of 44.4 /
    # 21.9 / 74.4; a quantised tail scored 0.
    int8, flt = pq['int8_full_fp32_io'], pq['none']
    assert int8['All'] > flt['All'] - 0.05, pq
    assert int8['Stuff'] > flt['Stuff'] - 0.05, pq
    assert int8['Things'] > 0.6 * flt['Things'], pq
