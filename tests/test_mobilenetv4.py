"""MaskConver on MobileNetV4 (issue #17): the two registered experiments.

Each equals `maskconver_mobilenet_mh_coco` but for the backbone's model_id.
Built at 64 px with the shapes set's 8 class channels (the only
architectural change from the COCO model), for MobileNetV4-Conv-S and -M:
- its backbone is Model Garden's `MobileNet(model_id)` up to the endpoints
  MaskConver reads: same endpoint shapes (strides 8 and 16) and the same
  parameter count as the sub-model of Model Garden's own network that
  computes those endpoints;
- one train step of our task on shapes TFRecords gives every backbone
  weight a gradient (no dead tail);
- its tflite export converts to full int8 with TFLite builtins only (no
  Flex or custom ops) and int8 convolutions throughout.
"""

import numpy as np
import pytest
import tf_keras

from official.core import exp_factory
from official.core import task_factory
from official.vision.modeling.backbones import mobilenet

from maskconver_tf import registry_imports  # noqa: F401  (registrations)
from maskconver_tf.data import create_tfrecords
from maskconver_tf.data import shapes
from maskconver_tf.modeling.backbones import mobilenet_trunk
from maskconver_tf.serving import export_module
from maskconver_tf.serving import tflite_conversion as tc

SIZE = 64
VARIANTS = {'maskconver_mobilenetv4_conv_small_coco': 'MobileNetV4ConvSmall',
            'maskconver_mobilenetv4_conv_medium_coco': 'MobileNetV4ConvMedium'}
NAMES = sorted(VARIANTS)


@pytest.fixture(scope='module')
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp('mnv4_shapes')
    json_path = shapes.generate_dataset(str(root / 'data'), 4,
                                        image_size=SIZE, seed=5)
    create_tfrecords.convert(
        str(root / 'data' / 'images'), json_path,
        str(root / 'data' / 'panoptic'), str(root / 'rec' / 'train'),
        num_shards=1)
    return str(root / 'rec' / 'train*')


def _params(name, records):
    """The experiment at SIZE px on shapes records (8 class channels)."""
    params = exp_factory.get_exp_config(name)
    params.task.dataset = 'shapes'
    model = params.task.model
    model.num_classes = 8
    model.input_size = [SIZE, SIZE, 3]
    model.panoptic_generator.output_size = [SIZE, SIZE]
    for data in (params.task.train_data, params.task.validation_data):
        data.input_path = records
        data.global_batch_size = 2
        data.parser.min_stuff_area = 16
        data.parser.segmentation_groundtruth_padded_size = [SIZE, SIZE]
    params.validate()
    return params


def _build(params):
    task = task_factory.get_task(params.task)
    tf_keras.utils.set_random_seed(0)
    return task, task.build_model()


def _used_levels(model_config):
    """Backbone levels the decoder (ASPP) and the heads' fusion read."""
    heads = (model_config.class_head, model_config.center_head,
             model_config.mask_feature_head)
    return sorted({str(model_config.decoder.aspp.level)}
                  | {str(h.low_level) for h in heads})


@pytest.mark.parametrize('name', NAMES)
def test_experiment_is_the_mobilenet_mh_one_but_the_backbone(name):
    params = exp_factory.get_exp_config(name).as_dict()
    reference = exp_factory.get_exp_config(
        'maskconver_mobilenet_mh_coco').as_dict()
    trunk = params['task']['model']['backbone']
    assert trunk['type'] == 'mobilenet_trunk'
    assert trunk['mobilenet_trunk']['model_id'] == VARIANTS[name]
    assert trunk['mobilenet_trunk']['output_stride'] == 16
    trunk['mobilenet_trunk']['model_id'] = 'MobileNetMultiAVGSeg'
    assert params == reference


@pytest.mark.parametrize('name', NAMES)
def test_backbone_is_model_gardens_trunk(name, records):
    params = _params(name, records)
    config = params.task.model
    _, model = _build(params)
    backbone = model.backbone
    assert isinstance(backbone, mobilenet_trunk.MobileNetTrunk)
    garden = mobilenet.MobileNet(
        model_id=VARIANTS[name], output_stride=16,
        input_specs=tf_keras.layers.InputSpec(shape=[None, SIZE, SIZE, 3]))
    levels = _used_levels(config)
    assert levels == ['3', '4']
    # Our outputs are exactly Model Garden's declared endpoints.
    assert set(backbone.output_specs) == set(garden.output_specs)
    assert set(backbone.output) == set(garden.output_specs)
    for level in levels:
        shape = backbone.output_specs[level].as_list()
        assert shape == garden.output_specs[level].as_list(), level
        assert shape[1:3] == [SIZE >> int(level)] * 2, level  # stride 2^level
    # Functional pruning keeps only the layers these endpoints depend on.
    used = tf_keras.Model(garden.input, [garden.output[l] for l in levels])
    count = lambda ws: int(sum(np.prod(w.shape) for w in ws))  # noqa: E731
    assert count(backbone.weights) == count(used.weights)
    assert count(backbone.trainable_weights) == count(used.trainable_weights)
    # Model Garden's network also builds the classification tail we drop.
    assert count(garden.weights) > count(used.weights)


@pytest.mark.parametrize('name', NAMES)
def test_train_step_reaches_every_backbone_weight(name, records):
    params = _params(name, records)
    # Without weight decay a weight moves only if the task loss reaches it.
    params.task.losses.l2_weight_decay = 0.0
    task, model = _build(params)
    batch = next(iter(task.build_inputs(params.task.train_data)))
    before = [v.numpy() for v in model.backbone.trainable_variables]
    metrics = task.build_metrics(training=True)
    logs = task.train_step(batch, model, tf_keras.optimizers.SGD(0.01),
                           metrics)
    assert np.isfinite(float(logs[task.loss]))
    assert all(np.isfinite(float(m.result())) for m in metrics)
    frozen = [v.name for v, b in zip(model.backbone.trainable_variables,
                                     before) if np.array_equal(v.numpy(), b)]
    assert not frozen


@pytest.mark.parametrize('name', NAMES)
def test_int8_tflite_has_builtin_ops_only(name, records, tmp_path):
    params = _params(name, records)
    tf_keras.utils.set_random_seed(1)
    module = export_module.export_saved_model(
        params, str(tmp_path), batch_size=1, input_type='tflite',
        input_image_size=[SIZE, SIZE], experiment=name)
    calibration = tc.calibration_images(params.task.train_data, [SIZE, SIZE],
                                        4)
    assert len(calibration) == 4
    model = tc.convert_saved_model(
        str(tmp_path / 'saved_model'), 'int8_full', calibration,
        denylisted_ops=tc.DEFAULT_INT8_DENYLIST)
    ops = tc.list_ops(model)
    assert tc.custom_ops(ops) == []
    assert not [op.name for op in ops
                if op.name == 'CUSTOM' or op.name.startswith('Flex')]
    # Only the denylisted embedding einsum multiplies in float, and there are
    # at least as many int8 kernels as the trunk has conv / depthwise layers.
    assert {op.name for op in tc.float_kernels(ops)} <= set(
        tc.DEFAULT_INT8_DENYLIST)
    trunk_convs = [m for m in module.model.backbone.submodules
                   if isinstance(m, (tf_keras.layers.Conv2D,
                                     tf_keras.layers.DepthwiseConv2D))]
    assert len(tc.int8_kernels(ops)) >= len(trunk_convs) > 20
    # It runs and keeps the export's output contract.
    model = tc.finalize(model, module.metadata(name))
    result = tc.run_tflite(tc.make_interpreter(model),
                           calibration[0][np.newaxis])
    assert [(k, v.shape) for k, v in result.items()] == [
        ('category_mask', (1, SIZE, SIZE)), ('instance_mask', (1, SIZE, SIZE)),
        ('classes', (1, 50)), ('scores', (1, 50))]
    assert np.all(np.isfinite(result['scores']))
