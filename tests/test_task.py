"""Tests of the registered experiments, YAMLs and the MaskConver task.

Every experiment and YAML loads strictly, validates and builds its model
(at a reduced input size: the architecture does not depend on it); an
unknown YAML key raises KeyError; `init_checkpoint_modules` is validated and
`initialize()` restores exactly the named modules; `build_inputs` gives
static shapes; a class-count / dataset mismatch raises a clear error.
"""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
import yaml

from official.core import exp_factory
from official.core import task_factory
from official.modeling import hyperparams

from maskconver_tf import registry_imports  # noqa: F401  (registrations)
from maskconver_tf.data import create_tfrecords
from maskconver_tf.data import shapes
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
