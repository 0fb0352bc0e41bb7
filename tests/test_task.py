"""Tests of the registered experiments, YAMLs and the MaskConver task.

Every experiment and YAML loads strictly, validates and builds its model
(at a reduced input size: the architecture does not depend on it); an
unknown YAML key raises KeyError; `init_checkpoint_modules` is validated and
`initialize()` restores exactly the named modules; `build_inputs` gives
static shapes; a class-count / dataset mismatch raises a clear error.
Training: the effective dice weight of every recipe; the dropped-segments
metric; mixed_float16 steps through the loss-scale optimizer; in-loop PQ
on images of another size than the model input.
"""

import glob
import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tf_keras
import yaml

from official.core import exp_factory
from official.core import task_factory
from official.modeling import hyperparams
from official.modeling import optimization
from official.modeling import performance

from maskconver_tf import registry_imports  # noqa: F401  (registrations)
from maskconver_tf.data import create_tfrecords
from maskconver_tf.data import shapes
from maskconver_tf.losses import maskconver_losses
from maskconver_tf.tasks import maskconver as task_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YAMLS = sorted(glob.glob(os.path.join(REPO, 'experiments', '*.yaml')))
# pylint: disable=protected-access
EXPERIMENTS = sorted(n for n in exp_factory._REGISTERED_CONFIGS
                     if n.startswith('maskconver_'))
# pylint: enable=protected-access
# Trainable parameters of the published mobile model (README: 3.4M).
MOBILE_COCO_PARAMS = 3_441_897
EXPECTED_PARAMS = {'maskconver_mobilenet_mh_coco': MOBILE_COCO_PARAMS}


def _experiment_for_yaml(path):
    """The registered experiment a YAML extends: the longest name prefix."""
    stem = os.path.splitext(os.path.basename(path))[0]
    names = [n for n in EXPERIMENTS if stem.startswith(n)]
    assert names, (f'{path}: no registered experiment is a prefix of '
                   f'{stem!r} (registered: {EXPERIMENTS}); is its config '
                   'imported by maskconver_tf.registry_imports?')
    return max(names, key=len)


def _shrink(params, size=64):
    """Reduces the input size so that building the model stays light."""
    model = params.task.model
    size = max(size, 2 ** getattr(model, 'max_level', 0))
    model.input_size = [size, size, 3]
    # Proposals per level must fit the coarsest grid (1x1 at 2^max_level).
    model.num_instances = min(model.num_instances, 64)
    if model.panoptic_generator.output_size:
        model.panoptic_generator.output_size = [size, size]
    return params


def _trainable_count(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def _build(params):
    task = task_factory.get_task(params.task)
    model = task.build_model()
    return task, model


def test_registered_experiments_exist():
    assert {'maskconver_mobilenet_mh_coco', 'maskconver_shapes'} <= set(
        EXPERIMENTS)
    assert YAMLS, 'experiments/*.yaml is empty'


def _check_model(name, params, task, model):
    """Parameter count, output shapes and descriptor of a built model."""
    n = _trainable_count(model)
    assert n > 1_000_000, f'{name}: {n} trainable parameters'
    if name in EXPECTED_PARAMS:
        assert n == EXPECTED_PARAMS[name], name
    assert task.descriptor.num_classes == params.task.model.num_classes
    size = params.task.model.input_size[0]
    out = model(tf.zeros([1, size, size, 3]), training=False)
    assert out['category_mask'].shape[0] == 1
    level = getattr(params.task.model, 'level', None)
    if level is not None:  # single-scale: one heatmap at stride 2^level
        assert out['class_heatmaps'].shape == (
            1, size >> level, size >> level, params.task.model.num_classes)


def _assert_applied(raw, actual, path=''):
    """Every leaf of a YAML dict equals the config value it overrides."""
    for key, value in raw.items():
        where = f'{path}.{key}' if path else key
        assert key in actual, where
        if isinstance(value, dict):
            _assert_applied(value, actual[key], where)
        elif isinstance(value, (list, tuple)):
            assert list(actual[key]) == list(value), where
        else:
            assert actual[key] == value, where


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_experiment_loads_validates_builds(name):
    params = exp_factory.get_exp_config(name)
    params.validate()
    # A config must survive a YAML round trip (params.yaml of a run).
    again = exp_factory.get_exp_config(name)
    again.override(yaml.safe_load(yaml.safe_dump(params.as_dict())),
                   is_strict=True)
    assert again.as_dict() == params.as_dict()
    if name == 'maskconver_mobilenet_mh_coco':
        assert params.task.model.num_classes == 201
    _shrink(params)
    params.lock()
    tf_keras.utils.set_random_seed(0)
    task, model = _build(params)
    _check_model(name, params, task, model)


def test_every_yaml_extends_a_registered_experiment():
    for path in YAMLS:
        _experiment_for_yaml(path)


@pytest.mark.parametrize('path', YAMLS, ids=os.path.basename)
def test_yaml_loads_validates_builds(path):
    name = _experiment_for_yaml(path)
    params = exp_factory.get_exp_config(name)
    params = hyperparams.override_params_dict(params, path, is_strict=True)
    params.validate()
    with open(path) as f:
        _assert_applied(yaml.safe_load(f), params.as_dict())
    _shrink(params)
    params.lock()
    tf_keras.utils.set_random_seed(0)
    task, model = _build(params)
    _check_model(name, params, task, model)


def test_unknown_yaml_key_raises_key_error(tmp_path):
    for bad in ({'task': {'model': {'num_clases': 8}}},
                {'trainer': {'train_step': 10}},
                {'task': {'train_data': {'parser': {'gaussaian_iou': 0.5}}}}):
        path = tmp_path / 'bad.yaml'
        path.write_text(yaml.safe_dump(bad))
        params = exp_factory.get_exp_config('maskconver_shapes')
        with pytest.raises(KeyError):
            hyperparams.override_params_dict(params, str(path), is_strict=True)
    # The same keys spelt correctly are accepted.
    path.write_text(yaml.safe_dump({'task': {'model': {'num_classes': 8}}}))
    params = hyperparams.override_params_dict(
        exp_factory.get_exp_config('maskconver_shapes'), str(path),
        is_strict=True)
    assert params.task.model.num_classes == 8


@pytest.mark.parametrize('modules, expected', [
    ('all', ['all']),
    ('backbone', ['backbone']),
    ('backbone,decoder', ['backbone', 'decoder']),
    (' backbone , decoder ', ['backbone', 'decoder']),
    (['backbone', 'decoder'], ['backbone', 'decoder']),
    (('decoder',), ['decoder']),
])
def test_validate_init_checkpoint_modules_accepts(modules, expected):
    assert task_lib.validate_init_checkpoint_modules(modules) == expected


@pytest.mark.parametrize('modules, match', [
    ('head', 'unknown'),
    (['backbone', 'heads'], 'unknown'),
    ('all,backbone', 'cannot be combined'),
    (['all', 'decoder'], 'cannot be combined'),
    ('', 'expected'),
    ([], 'expected'),
])
def test_validate_init_checkpoint_modules_rejects(modules, match):
    with pytest.raises(ValueError, match=match):
        task_lib.validate_init_checkpoint_modules(modules)


def _shapes_params(size=64):
    params = exp_factory.get_exp_config('maskconver_shapes')
    params.task.model.input_size = [size, size, 3]
    params.task.model.panoptic_generator.output_size = [size, size]
    return params


def _groups(model):
    """Variables by checkpoint item (same order in two equal models)."""
    return {k: v.weights for k, v in model.checkpoint_items.items()}


def _equal(a, b):
    return all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a, b))


def _all_differ(a, b):
    """True when every kernel that is random at init differs between a, b."""
    kernels = [(x, y) for x, y in zip(a, b) if 'kernel' in x.name
               or 'embeddings' in x.name]
    assert kernels
    return all(not np.array_equal(x.numpy(), y.numpy()) for x, y in kernels)


def test_initialize_restores_exactly_the_named_modules(tmp_path):
    params = _shapes_params()
    tf_keras.utils.set_random_seed(1)
    source_task, source = _build(params)
    # The layout Model Garden's trainer writes: model + its checkpoint items.
    ckpt_dir = str(tmp_path / 'source')
    tf.train.Checkpoint(model=source, **source.checkpoint_items).save(
        os.path.join(ckpt_dir, 'ckpt'))
    del source_task

    tf_keras.utils.set_random_seed(2)
    task, target = _build(params)
    src, dst = _groups(source), _groups(target)
    assert set(src) >= {'backbone', 'decoder', 'class_head', 'center_head',
                        'mask_feature_head', 'mask_embedding_generator'}
    for k in src:
        assert _all_differ(src[k], dst[k]), f'{k} equal before restoring'
    assert sum(len(v) for v in dst.values()) == len(target.weights)

    def restore(modules, path):
        task.task_config.init_checkpoint = path
        task.task_config.init_checkpoint_modules = modules
        task.initialize(target)

    latest = tf.train.latest_checkpoint(ckpt_dir)
    restore(['backbone'], latest)  # a checkpoint file prefix
    for k in src:
        if k == 'backbone':
            assert _equal(src[k], dst[k])
        else:
            assert _all_differ(src[k], dst[k]), f'{k} restored with backbone'

    restore('backbone,decoder', ckpt_dir)  # a directory: its latest ckpt
    for k in src:
        if k in ('backbone', 'decoder'):
            assert _equal(src[k], dst[k])
        else:
            assert _all_differ(src[k], dst[k]), f'{k} restored with decoder'

    restore('all', ckpt_dir)
    assert _equal(source.weights, target.weights)
    out_a = source(tf.ones([1, 64, 64, 3]), training=False)
    out_b = target(tf.ones([1, 64, 64, 3]), training=False)
    np.testing.assert_array_equal(out_a['class_heatmaps'].numpy(),
                                  out_b['class_heatmaps'].numpy())

    with pytest.raises(ValueError, match='holds no checkpoint'):
        restore('all', str(tmp_path))
    with pytest.raises(ValueError, match='unknown'):
        restore('heads', latest)


@pytest.fixture(scope='module')
def shapes_records(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes')
    json_path = shapes.generate_dataset(str(root / 'data'), 5, image_size=64,
                                        seed=3)
    report = create_tfrecords.convert(
        str(root / 'data' / 'images'), json_path, str(root / 'data' / 'panoptic'),
        str(root / 'rec' / 'train'), num_shards=1)
    assert report.images_written == 5
    return str(root / 'rec' / 'train*')


def test_build_inputs_has_static_shapes(shapes_records):
    params = _shapes_params()
    for data in (params.task.train_data, params.task.validation_data):
        data.input_path = shapes_records
        data.global_batch_size = 2
        data.parser.min_stuff_area = 16
    task = task_factory.get_task(params.task)
    c = params.task.model

    train = task.build_inputs(params.task.train_data)
    for spec in tf.nest.flatten(train.element_spec):
        assert spec.shape.is_fully_defined(), spec
    images, labels = next(iter(train))
    assert images.shape == (2, 64, 64, 3)
    assert labels['center_indices'].shape == (2, c.num_instances, 2)
    classes = labels['classes'].numpy()
    real = classes[classes >= 0]
    assert real.size > 0 and real.max() < c.num_classes and real.min() >= 1
    assert np.all(classes[classes < 0] == -1)

    # Evaluation keeps the last partial batch: only the batch dim is free
    # once the original-resolution ground truth is padded to a fixed size.
    params.task.validation_data.parser.segmentation_groundtruth_padded_size = [
        64, 64]
    val = task.build_inputs(params.task.validation_data)
    for spec in tf.nest.flatten(val.element_spec):
        assert spec.shape[1:].is_fully_defined(), spec
    sizes = [int(b[0].shape[0]) for b in val]
    assert sizes == [2, 2, 1]


def test_num_classes_dataset_mismatch_raises():
    params = _shapes_params()
    params.task.model.num_classes = 201
    with pytest.raises(ValueError, match=r"model.num_classes is 201 but "
                       r"dataset 'shapes'.* has 8 class channels"):
        task_factory.get_task(params.task)
    params = exp_factory.get_exp_config('maskconver_mobilenet_mh_coco')
    params.task.label_mode = 'contiguous'
    with pytest.raises(ValueError, match='model.num_classes is 201'):
        task_factory.get_task(params.task)


# Dice weight each recipe trains with: the reference's mask_weight for the
# COCO recipes; 1 for the shapes recipe (tuned that way).
DICE_WEIGHTS = {'maskconver_mobilenet_mh_coco': 5.0, 'maskconver_shapes': 1.0,
                'maskconver_r50_convnext_unet_coco': 10.0,
                'maskconver_r50_convnext_unet_shapes': 1.0,
                'maskconver_mobilenetv4_conv_small_coco': 5.0,
                'maskconver_mobilenetv4_conv_medium_coco': 5.0}


def _dice_weight(params):
    c = params.task.losses
    return maskconver_losses.effective_dice_weight(c.mask_weight, c.dice_weight)


def test_effective_dice_weights_of_experiments_and_yamls():
    assert set(DICE_WEIGHTS) == set(EXPERIMENTS)
    for name, weight in DICE_WEIGHTS.items():
        assert _dice_weight(exp_factory.get_exp_config(name)) == weight, name
    for path in YAMLS:
        name = _experiment_for_yaml(path)
        params = hyperparams.override_params_dict(
            exp_factory.get_exp_config(name), path, is_strict=True)
        assert _dice_weight(params) == DICE_WEIGHTS[name], path
    # The mobile recipe leaves it unset (= mask_weight); an override, as
    # --params_override passes it, replaces the None default.
    params = exp_factory.get_exp_config('maskconver_mobilenet_mh_coco')
    assert params.task.losses.dice_weight is None
    params = hyperparams.override_params_dict(
        params, 'task.losses.dice_weight=2.5', is_strict=True)
    assert _dice_weight(params) == 2.5


def test_build_losses_weighs_dice_by_the_effective_weight():
    rng = np.random.RandomState(0)
    labels = {'heatmaps': rng.rand(2, 4, 4, 8).astype(np.float32),
              'num_instances': np.array([2, 1], np.int32),
              'masks': (rng.rand(2, 8, 8, 3) > 0.5).astype(np.float32),
              'mask_weights': np.array([[1, 1, 0], [1, 0, 0]], np.float32),
              'padding_mask': np.zeros([2, 8, 8], np.float32)}
    outputs = {'class_heatmaps': tf.constant(rng.randn(2, 4, 4, 8),
                                             tf.float32),
               'mask_logits': tf.constant(rng.randn(2, 4, 4, 3), tf.float32)}
    for dice_weight, expected in ((None, 5.0), (1.0, 1.0), (0.0, 0.0)):
        params = _shapes_params()
        params.task.losses.dice_weight = dice_weight
        losses = task_factory.get_task(params.task).build_losses(labels,
                                                                 outputs)
        assert losses['mask_dice_loss'] > 0.01
        np.testing.assert_allclose(
            losses['model_loss'],
            losses['center_loss'] + 5.0 * losses['mask_bce_loss']
            + expected * losses['mask_dice_loss'], rtol=1e-6)


def test_shapes_yaml_differs_from_the_registered_base_as_documented():
    """experiments.py documents exactly these overrides of the YAML."""
    base = exp_factory.get_exp_config('maskconver_shapes').as_dict()
    recipe = hyperparams.override_params_dict(
        exp_factory.get_exp_config('maskconver_shapes'),
        os.path.join(REPO, 'experiments', 'maskconver_shapes.yaml'),
        is_strict=True).as_dict()

    def diff(a, b, path=()):
        if isinstance(a, dict):
            return {k: v for key in a for k, v in
                    diff(a[key], b[key], path + (key,)).items()}
        return {} if a == b else {'.'.join(path): (a, b)}

    assert diff(base, recipe) == {
        'task.model.num_instances': (50, 20),
        'task.model.panoptic_generator.duplicate_iou_threshold': (None, 0.7),
        'task.losses.dice_mode': ('global', 'per_mask'),
        'task.losses.class_weight': (0.0, 1.0),
        'task.train_data.parser.mask_target_stride': (1, 2),
        'trainer.train_steps': (1500, 650),
        'trainer.optimizer_config.learning_rate.cosine.decay_steps': (1500,
                                                                      650),
        'trainer.validation_interval': (500, 650)}


def test_init_checkpoint_modules_typo_fails_without_a_checkpoint():
    params = _shapes_params()
    assert not params.task.init_checkpoint
    params.task.init_checkpoint_modules = 'backbone,decodr'
    with pytest.raises(ValueError, match=r"unknown: \['decodr'\]"):
        task_factory.get_task(params.task)


def _train_data(params, records, batch, **parser):
    data = params.task.train_data
    data.input_path = records
    data.global_batch_size = batch
    data.parser.min_stuff_area = 16
    data.parser.override(parser)
    return data


def test_dropped_segments_metric_counts_segments_beyond_k(shapes_records):
    # No flip, no jitter: each image parses to the same segments with any K.
    fixed = dict(aug_rand_hflip=False, aug_scale_min=1.0, aug_scale_max=1.0)
    wide = _shapes_params()
    wide_data = _train_data(wide, shapes_records, 1, **fixed)
    wide_parser = task_factory.get_task(wide.task).build_parser(wide_data)
    decoder = task_factory.get_task(wide.task).build_decoder(wide_data)
    counts = [int(wide_parser.parse_fn(True)(decoder.decode(r))[1][
        'num_instances']) for r in tf.data.TFRecordDataset(
            tf.io.gfile.glob(shapes_records))]
    assert len(counts) == 5 and max(counts) < 50
    k = 2
    expected = sum(max(n - k, 0) for n in counts)
    assert expected > 0, counts

    params = _shapes_params()
    params.task.model.num_instances = k
    data = _train_data(params, shapes_records, 5, **fixed)
    data.shuffle_buffer_size = 1  # the batch is the 5 records in file order
    task = task_factory.get_task(params.task)
    tf_keras.utils.set_random_seed(0)
    model = task.build_model()
    batch = next(iter(task.build_inputs(data)))
    np.testing.assert_array_equal(batch[1]['num_dropped_segments'],
                                  [max(n - k, 0) for n in counts])
    metrics = task.build_metrics(training=True)
    task.train_step(batch, model, tf_keras.optimizers.SGD(0.0), metrics)
    result = {m.name: float(m.result()) for m in metrics}
    assert result[task_lib.DROPPED_METRIC] == expected
    assert set(result) == set(task_lib.LOSS_NAMES) | {task_lib.DROPPED_METRIC}


def _flat(arrays):
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])


def test_mixed_float16_train_steps_scale_the_loss(shapes_records):
    params = _shapes_params()
    params.task.train_data = _train_data(params, shapes_records, 2)
    # Model Garden's value: its train lib sets the 'mixed_float16' policy and
    # create_optimizer wraps the optimizer in dynamic loss scaling.
    params.runtime.mixed_precision_dtype = 'float16'
    # Plain SGD: the update is -lr * gradient, so a missing (or doubled)
    # unscaling would show as a 2^k times too large (small) step.
    lr = 0.01
    params.trainer.optimizer_config = optimization.OptimizationConfig({
        'optimizer': {'type': 'sgd', 'sgd': {'momentum': 0.0}},
        'learning_rate': {'type': 'constant',
                          'constant': {'learning_rate': lr}}})
    task = task_factory.get_task(params.task)
    batch = next(iter(task.build_inputs(params.task.train_data)))
    previous = tf_keras.mixed_precision.global_policy()
    performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
    try:
        tf_keras.utils.set_random_seed(0)
        model = task.build_model()
        optimizer = task.create_optimizer(params.trainer.optimizer_config,
                                          params.runtime)
        assert model.backbone.compute_dtype == 'float16'
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)
    assert isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    assert model.trainable_variables[0].dtype == tf.float32

    # The float32 gradient at the same weights.
    reference = task.build_model()
    reference.set_weights(model.get_weights())
    with tf.GradientTape() as tape:
        outputs = task._forward_train(reference, *batch)  # pylint: disable=protected-access
        reference_loss = task.build_losses(batch[1], outputs,
                                           reference.losses)['total_loss']
    expected_update = -lr * _flat(tape.gradient(
        reference_loss, reference.trainable_variables))

    metrics = task.build_metrics(training=True)
    step = tf.function(lambda b: task.train_step(b, model, optimizer, metrics))
    scale = float(optimizer.loss_scale)
    assert scale == 2.0 ** 15
    # At init some float16 gradients overflow at the initial scale: those
    # steps are skipped (weights kept) and halve the scale until one fits.
    for _ in range(12):
        before = _flat(model.trainable_variables)
        logs = step(batch)
        assert set(logs) == {task.loss}
        assert logs[task.loss].dtype == tf.float32
        assert float(logs[task.loss]) == pytest.approx(float(reference_loss),
                                                       rel=1e-2)
        update = _flat(model.trainable_variables) - before
        if update.any():
            break
        assert float(optimizer.loss_scale) == scale / 2
        scale /= 2
    assert update.any(), 'every step overflowed'
    assert float(optimizer.loss_scale) == scale
    ratio = np.linalg.norm(update) / np.linalg.norm(expected_update)
    cosine = update @ expected_update / (np.linalg.norm(update) *
                                         np.linalg.norm(expected_update))
    # float16 rounding of an ill-conditioned gradient at init: measured
    # cosine 0.73-0.81, norm ratio 1.03-1.06 over three seeds.
    assert 0.8 < ratio < 1.25 and cosine > 0.5, (ratio, cosine)
    result = {m.name: float(m.result()) for m in metrics}
    assert set(result) == set(task_lib.LOSS_NAMES) | {task_lib.DROPPED_METRIC}
    assert all(np.isfinite(v) for v in result.values()), result


# A 96 x 80 (H x W) scene for in-loop PQ: sky (11) over ground (12), a disc
# (1) in the sky and two squares (2) on the ground; panoptic segment ids 1-5.
PQ_HEIGHT, PQ_WIDTH, PQ_CANVAS = 96, 80, 112
PQ_SEGMENTS = [(1, 11), (2, 12), (3, 1), (4, 2), (5, 2)]  # (id, category)
DISC, SQUARE_B = (slice(10, 30), slice(40, 70)), (slice(60, 90),
                                                  slice(45, 75))


def _pq_scene():
    ids = np.ones([PQ_HEIGHT, PQ_WIDTH], np.int32)
    ids[40:] = 2
    ids[DISC] = 3
    ids[50:70, 10:30] = 4
    ids[SQUARE_B] = 5
    return ids


@pytest.fixture(scope='module')
def pq_records(tmp_path_factory):
    """Two identical 96 x 80 images (TFRecords), for a 64 x 64 model."""
    root = tmp_path_factory.mktemp('pq')
    ids = _pq_scene()
    categories = [c for _, c in PQ_SEGMENTS]
    palette = np.random.RandomState(0).randint(0, 256, [6, 3]).astype(np.uint8)
    os.makedirs(root / 'images')
    os.makedirs(root / 'panoptic')
    images, annotations = [], []
    for image_id in (1, 2):
        stem = f'{image_id:06d}'
        Image.fromarray(palette[ids]).save(root / 'images' / f'{stem}.png')
        Image.fromarray(shapes.encode_panoptic_png(ids)).save(
            root / 'panoptic' / f'{stem}.png')
        images.append({'id': image_id, 'file_name': f'{stem}.png',
                       'height': PQ_HEIGHT, 'width': PQ_WIDTH})
        annotations.append({'image_id': image_id, 'file_name': f'{stem}.png',
                            'segments_info': shapes._segments_info(  # pylint: disable=protected-access
                                ids, categories)})
    with open(root / 'panoptic.json', 'w') as f:
        json.dump({'images': images, 'annotations': annotations,
                   'categories': shapes.CATEGORIES}, f)
    create_tfrecords.convert(str(root / 'images'), str(root / 'panoptic.json'),
                             str(root / 'panoptic'), str(root / 'rec' / 'val'))
    return str(root / 'rec' / 'val*')


class _CanvasModel:
    """Stands in for the network: returns given panoptic canvases in turn."""

    def __init__(self, canvases):
        self.canvases = list(canvases)

    def __call__(self, images, image_info=None, training=False):
        del images, image_info, training
        category, instance = self.canvases.pop(0)
        return {'category_mask': tf.constant(category[np.newaxis]),
                'instance_mask': tf.constant(instance[np.newaxis])}


def test_in_loop_pq_on_images_of_another_size(pq_records):
    ids = _pq_scene()
    category = np.zeros_like(ids)
    for sid, cid in PQ_SEGMENTS:
        category[ids == sid] = cid
    instance = np.where(category < 10, ids, 0)  # things only

    def canvas(category, instance):
        """Prediction on the output canvas (original-image pixels, as the
        model's rescaled output); junk outside the image, where the padded
        ground truth is void, must not count."""
        c = np.full([PQ_CANVAS, PQ_CANVAS], 13, np.int32)  # wall
        i = np.zeros([PQ_CANVAS, PQ_CANVAS], np.int32)
        c[100:, :20], i[100:, :20] = 1, 9  # a disc below the image
        c[:PQ_HEIGHT, :PQ_WIDTH] = category
        i[:PQ_HEIGHT, :PQ_WIDTH] = instance
        return c, i

    # Image 2: the disc's last 5 rows predicted as sky; square B as void.
    category2, instance2 = category.copy(), instance.copy()
    category2[25:30, DISC[1]], instance2[25:30, DISC[1]] = 11, 0
    category2[SQUARE_B], instance2[SQUARE_B] = 0, 0
    model = _CanvasModel([canvas(category, instance),
                          canvas(category2, instance2)])

    params = _shapes_params()
    params.task.model.panoptic_generator.output_size = [PQ_CANVAS, PQ_CANVAS]
    data = params.task.validation_data
    data.input_path = pq_records
    data.global_batch_size = 1
    data.parser.segmentation_groundtruth_padded_size = [PQ_CANVAS, PQ_CANVAS]
    task = task_factory.get_task(params.task)
    task.build_metrics(training=False)
    state = None
    for images, labels in task.build_inputs(data):
        assert images.shape == (1, 64, 64, 3)
        # Resized to 64 x 53 (80 * 2/3 rounded) inside the 64 x 64 input.
        np.testing.assert_allclose(
            labels['image_info'][0],
            [[96, 80], [64, 64], [64 / 96, 53 / 80], [0, 0]], rtol=1e-6)
        gt = labels['groundtruth_category_mask'][0].numpy()
        np.testing.assert_array_equal(gt[:PQ_HEIGHT, :PQ_WIDTH], category)
        assert gt.shape == (PQ_CANVAS, PQ_CANVAS) and gt[PQ_HEIGHT:].max() == 0
        logs = task.validation_step((images, labels), model)
        state = task.aggregate_logs(state, logs)
    assert not model.canvases
    result = task.reduce_aggregated_logs(state)

    # Expected, per category over both images (IoU; TP, FP, FN):
    sky = (ids == 1).sum()  # 2600 px
    pq = {
        # disc: IoU 1 and 450 / 600.
        1: (1.0 + 450 / 600) / 2,
        # square: 3 TP of IoU 1, 1 FN (square B of image 2).
        2: 3.0 / (3 + 0.5),
        # sky: IoU 1 and sky / (sky + the 150 disc px predicted as sky).
        11: (1.0 + sky / (sky + 150)) / 2,
        12: 1.0,
    }
    expected = {
        'All_pq': np.mean(list(pq.values())),
        'Things_pq': (pq[1] + pq[2]) / 2,
        'Stuff_pq': (pq[11] + pq[12]) / 2,
        'Things_rq': (1.0 + 3 / 3.5) / 2,
        'Things_sq': (pq[1] + 1.0) / 2,
        'All_num_categories': 4, 'Things_num_categories': 2,
        'Stuff_num_categories': 2,
    }
    for key, value in expected.items():
        assert result[f'panoptic_quality/{key}'] == pytest.approx(
            value, rel=1e-6), key
