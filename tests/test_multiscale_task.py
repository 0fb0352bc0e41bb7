"""The multi-scale experiment, YAML, parser and task on tiny shapes data.

- `maskconver_r50_convnext_unet_coco` loads, validates, survives a YAML
  round trip and has the reference recipe's numbers; its YAML loads strictly
  and builds the full model (at 128 px).
- The parser's copy-paste path gives exactly the pasted image (flip off).
- A 64 px multi-scale variant (ResNet-18, levels 3-6, narrow heads) runs 2
  train steps of the real task on shapes TFRecords with copy-paste, using the
  experiment's AdamW + EMA optimizer: finite losses, every variable gets a
  gradient and moves; the dropped-segments metric counts the (segment,
  level) pairs beyond K; validation_step feeds PQ.
"""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
import yaml

from official.core import exp_factory
from official.modeling import hyperparams
from official.modeling import optimization
from official.modeling.optimization import ema_optimizer

from maskconver_tf.configs import multiscale_maskconver_task as ms_cfg
from maskconver_tf.data import create_tfrecords
from maskconver_tf.data import shapes
from maskconver_tf.dataloaders import decoder as decoder_lib
from maskconver_tf.dataloaders import multiscale_maskconver_input as ms_input
from maskconver_tf.ops import multiscale_targets
from maskconver_tf.ops import preprocess
from maskconver_tf.tasks import multiscale_maskconver as ms_task

NAME = 'maskconver_r50_convnext_unet_coco'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YAML = os.path.join(REPO, 'experiments', NAME + '.yaml')
SIZE = 64


def test_experiment_loads_validates_round_trips():
    params = exp_factory.get_exp_config(NAME)
    params.validate()
    again = exp_factory.get_exp_config(NAME)
    again.override(yaml.safe_load(yaml.safe_dump(params.as_dict())),
                   is_strict=True)
    assert again.as_dict() == params.as_dict()
    assert isinstance(params.task, ms_cfg.MultiScaleMaskConverTask)
    t, opt = params.task, params.trainer.optimizer_config
    assert list(t.model.input_size) == [1280, 1280, 3]
    assert (t.model.min_level, t.model.max_level) == (3, 7)
    assert t.model.num_instances == 256 and t.model.num_classes == 201
    b = t.model.backbone.resnet_unet
    assert t.model.backbone.type == 'resnet_unet' and b.model_id == 50
    assert (b.stochastic_depth_drop_rate, b.bn_trainable) == (0.1, False)
    assert list(b.upsample_repeats) == [18, 1, 1]
    fpn = t.model.decoder
    assert fpn.type == 'maskconver_fpn'
    assert (fpn.maskconver_fpn.fusion_type, fpn.maskconver_fpn.num_filters,
            fpn.maskconver_fpn.use_separable_conv,
            fpn.maskconver_fpn.depthwise_kernel_size,
            fpn.maskconver_fpn.use_layer_norm) == ('concat', 256, True, 7,
                                                   True)
    m = t.model.mask_feature_head
    assert (m.feature_fusion, m.level, m.num_convs) == ('pyramid_fusion', 2, 4)
    n = t.model.norm_activation
    assert (n.activation, n.norm_momentum, n.use_sync_bn) == ('gelu', 0.0,
                                                              True)
    assert t.train_data.parser.aug_type == 'panoptic_deeplab_policy'
    assert t.validation_data.global_batch_size == 16
    assert params.trainer.validation_steps == 312
    assert params.trainer.validation_interval == 308
    assert params.trainer.best_checkpoint_eval_metric == (
        'panoptic_quality/All_pq')
    assert t.train_data.global_batch_size == 128
    assert params.trainer.train_steps == 270000
    assert t.losses.mask_weight == 10.0 and t.losses.dice_weight == 10.0
    assert t.losses.l2_weight_decay == 0.0
    p = t.train_data.parser
    assert list(p.fpn_low_range) == [0, 100, 200, 400, 800]
    assert list(p.fpn_high_range) == [100, 200, 400, 800, 12.5e6]
    assert p.copypaste_frequency == 0.5 and p.center_type == 'centroid'
    assert opt.optimizer.type == 'adamw'
    assert opt.optimizer.adamw.weight_decay_rate == 0.05
    assert opt.optimizer.adamw.gradient_clip_norm == 1.0
    assert opt.ema.average_decay == 0.99996
    assert opt.ema.trainable_weights_only is False
    assert opt.learning_rate.cosine.initial_learning_rate == 1e-3
    assert opt.warmup.linear.warmup_steps == 500


def test_yaml_loads_validates_builds():
    params = hyperparams.override_params_dict(
        exp_factory.get_exp_config(NAME), YAML, is_strict=True)
    params.validate()
    with open(YAML) as f:
        raw = yaml.safe_load(f)
    assert list(params.task.model.input_size) == raw['task']['model'][
        'input_size']
    assert params.trainer.train_steps == raw['trainer']['train_steps']
    assert params.task.init_checkpoint_modules == 'backbone'
    # The YAML restates the registered recipe: only the init modules differ.
    registered = exp_factory.get_exp_config(NAME)
    registered.task.init_checkpoint_modules = 'backbone'
    assert params.as_dict() == registered.as_dict()
    # The architecture is size-free: at 128 px level 7 is 1 x 1 and the
    # K = 256 proposals come from one top-K over all levels.
    size = 128
    params.task.model.input_size = [size, size, 3]
    params.lock()
    tf_keras.utils.set_random_seed(0)
    task = ms_task.MultiScaleMaskConverTask(params.task)
    model = task.build_model()
    # Model Garden's resnet_unet test pins R50 [18, 1, 1] x 384 at this; the
    # FPN's count is worked out layer by layer in test_maskconver_fpn.
    assert model.backbone.count_params() == 55_205_440
    assert model.decoder.count_params() == 904_832
    assert not any(l.trainable_weights for l in model.backbone.submodules
                   if isinstance(l, tf_keras.layers.BatchNormalization))
    out = model(tf.zeros([1, size, size, 3]), training=False)
    cells = multiscale_targets.num_cells(size, size, 3, 7)
    assert out['class_heatmaps'].shape == (1, cells, 201)
    assert out['category_mask'].shape == (1, 640, 640)


@pytest.fixture(scope='module')
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp('ms_shapes')
    json_path = shapes.generate_dataset(str(root / 'data'), 6,
                                        image_size=SIZE, seed=4)
    report = create_tfrecords.convert(
        str(root / 'data' / 'images'), json_path,
        str(root / 'data' / 'panoptic'), str(root / 'rec' / 'train'))
    assert report.images_written == 6
    return str(root / 'rec' / 'train*')


def _tiny_params(records, copypaste=0.5, hflip=True):
    """The registered experiment shrunk to 64 px, shapes, 4 levels."""
    params = exp_factory.get_exp_config(NAME)
    ranges = {'fpn_low_range': [0, 8, 16, 32],
              'fpn_high_range': [8, 16, 32, 1e6]}
    parser = dict(ranges, aug_scale_min=0.75, aug_scale_max=1.25,
                  aug_rand_hflip=hflip, copypaste_frequency=copypaste,
                  copypaste_aug_scale_min=0.5, copypaste_aug_scale_max=1.0,
                  copypaste_shuffle_buffer_size=4)
    narrow = {'num_convs': 1, 'num_filters': 16, 'depthwise_kernel_size': 3}
    overrides = {
        'task': {
            'dataset': 'shapes',
            'model': {
                'input_size': [SIZE, SIZE, 3], 'num_classes': 8,
                # K <= the 1 x 1 x 8 cells of level 6 (proposals per level).
                'num_instances': 8, 'embedding_size': 16, 'max_level': 6,
                'backbone': {'resnet_unet': {
                    'model_id': 18, 'upsample_repeats': [1, 1, 1],
                    'upsample_filters': [16, 16, 16],
                    'upsample_kernel_sizes': [3, 3, 3]}},
                'decoder': {'maskconver_fpn': {'num_filters': 16}},
                'class_head': narrow, 'center_head': narrow,
                'mask_feature_head': narrow,
                'mask_embedding': {'mlp_hidden_size': 32},
                'panoptic_generator': {'output_size': [SIZE, SIZE]}},
            'train_data': {'input_path': records, 'global_batch_size': 2,
                           'shuffle_buffer_size': 6, 'parser': parser},
            'validation_data': {
                'input_path': records, 'global_batch_size': 2,
                'parser': dict(ranges, segmentation_groundtruth_padded_size=[
                    SIZE, SIZE])},
        },
        'trainer': {'optimizer_config': {
            'warmup': {'linear': {'warmup_steps': 1}}}},
    }
    return hyperparams.override_params_dict(params, overrides, is_strict=True)


def _decoded(records, n=2):
    ds = tf.data.TFRecordDataset(tf.io.gfile.glob(records))
    decoder = decoder_lib.TfExampleDecoder()
    return [decoder.decode(x) for x in ds.take(n)]


def test_parser_copy_paste_pastes_the_second_image(records):
    params = _tiny_params(records, copypaste=1.0, hflip=False)
    params.task.train_data.parser.aug_scale_min = 1.0
    params.task.train_data.parser.aug_scale_max = 1.0
    params.task.train_data.parser.copypaste_aug_scale_min = 1.0
    params.task.train_data.parser.copypaste_aug_scale_max = 1.0
    task = ms_task.MultiScaleMaskConverTask(params.task)
    parser = task.build_parser(params.task.train_data)
    a, b = _decoded(records)
    # Shapes images have no void; voiding the second image's sky band
    # leaves its things and the other stuff to paste.
    descriptor = task.descriptor
    sky = descriptor.ids[[c.name for c in descriptor.categories].index('sky')]
    category_b = tf.where(b['category_mask'] == sky, 0, b['category_mask'])
    image, labels = parser.parse_fn(True)(dict(a, **{
        ms_input.COPY_PASTE_KEY: {'image': b['image'],
                                  'category_mask': category_b,
                                  'instance_mask': b['instance_mask']}}))
    pasted = category_b.numpy() > 0
    assert 0 < pasted.sum() < SIZE * SIZE
    assert (b['instance_mask'].numpy() > 0).sum() > 0
    expected = np.where(pasted[..., None], b['image'].numpy(),
                        a['image'].numpy()).astype(np.float32)
    expected = (expected - np.asarray(preprocess.MEAN_RGB)) / np.asarray(
        preprocess.STDDEV_RGB)
    np.testing.assert_allclose(image.numpy(), expected, atol=1e-3)
    n = multiscale_targets.num_cells(SIZE, SIZE, 3, 6)
    assert labels['heatmaps'].shape == (n, 8)
    assert labels['masks'].shape == (SIZE // 2, SIZE // 2, 8)
    k = int(labels['num_instances'])
    assert k > 0 and np.all(labels['center_indices'].numpy()[:k] < n)
    # Without the second sample the parser is the plain multi-scale one.
    image, _ = parser.parse_fn(True)(a)
    plain = (a['image'].numpy() - np.asarray(preprocess.MEAN_RGB)) / \
        np.asarray(preprocess.STDDEV_RGB)
    np.testing.assert_allclose(image.numpy(), plain, atol=1e-3)


def test_two_train_steps_and_validation(records):
    tf_keras.utils.set_random_seed(3)
    params = _tiny_params(records)
    task = ms_task.MultiScaleMaskConverTask(params.task)
    model = task.build_model()
    factory = optimization.OptimizerFactory(params.trainer.optimizer_config)
    optimizer = factory.build_optimizer(factory.build_learning_rate())
    assert isinstance(optimizer, ema_optimizer.ExponentialMovingAverage)
    optimizer.shadow_copy(model)

    train = task.build_inputs(params.task.train_data)
    for spec in tf.nest.flatten(train.element_spec):
        assert spec.shape.is_fully_defined(), spec
    metrics = task.build_metrics(training=True)
    step = tf.function(lambda x: task.train_step(x, model, optimizer,
                                                 metrics=metrics))
    before = [v.numpy().copy() for v in model.trainable_variables]
    losses = []
    iterator = iter(train)
    batches = [next(iterator) for _ in range(2)]
    for batch in batches:
        logs = step(batch)
        losses.append(float(logs['loss']))
    assert all(np.isfinite(losses)), losses
    values = {m.name: float(m.result()) for m in metrics}
    # K = 8 slots: (segment, level) pairs beyond them are reported.
    dropped = sum(int(tf.reduce_sum(labels['num_dropped_segments']))
                  for _, labels in batches)
    assert values['num_dropped_segments'] == dropped > 0, dropped
    for name in ('center_loss', 'mask_bce_loss', 'mask_dice_loss'):
        assert np.isfinite(values[name]) and values[name] > 0, values
    # train_step raises if a variable gets no gradient (None); here the
    # gradients are also checked directly. Zero gradients are legitimate
    # (e.g. a level's norms in the center head when no slot sits on that
    # level), so only most variables must move.
    images, labels = next(iterator)
    with tf.GradientTape() as tape:
        outputs = model(images, center_indices=labels['center_indices'],
                        classes=labels['classes'], training=True)
        loss = task.build_losses(labels, outputs, model.losses)['total_loss']
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None for g in grads)
    moved = [not np.array_equal(v.numpy(), b)
             for v, b in zip(model.trainable_variables, before)]
    print(f'{sum(moved)} of {len(moved)} variables moved')
    assert np.mean(moved) > 0.8, np.mean(moved)

    val = task.build_inputs(params.task.validation_data)
    val_metrics = task.build_metrics(training=False)
    state = None
    for batch in val.take(2):
        logs = task.validation_step(batch, model, metrics=val_metrics)
        gt, pred = logs['panoptic_quality']
        assert gt['category_mask'].shape == pred['category_mask'].shape == (
            2, SIZE, SIZE)
        state = task.aggregate_logs(state, logs)
    result = task.reduce_aggregated_logs(state)
    assert 0.0 <= result['panoptic_quality/All_pq'] <= 1.0
    assert all(np.isfinite(float(m.result())) for m in val_metrics)
    # The center class loss is single-scale only: a clear error, not a 0.
    params.task.losses.class_weight = 1.0
    with pytest.raises(ValueError, match='class_weight is 1.0'):
        ms_task.MultiScaleMaskConverTask(params.task).build_losses(
            labels, outputs)


def test_flagship_yaml_trains_two_steps_and_validates_at_128(records,
                                                             tmp_path):
    """The full flagship (R50 ConvNeXt-UNet, maskconver_fpn, K 256, EMA,
    AutoAugment, copy-paste) from its YAML through Model Garden's
    train_lib, with only size, data, batch and step overrides."""
    from official.core import task_factory
    from official.core import train_lib
    params = hyperparams.override_params_dict(
        exp_factory.get_exp_config(NAME), YAML, is_strict=True)
    size = 128
    params = hyperparams.override_params_dict(params, {
        'task': {
            'dataset': 'shapes', 'init_checkpoint': None,
            'model': {'input_size': [size, size, 3], 'num_classes': 8,
                      'norm_activation': {'use_sync_bn': False},
                      'panoptic_generator': {'output_size': [size, size]}},
            'train_data': {'input_path': records, 'global_batch_size': 2,
                           'shuffle_buffer_size': 6,
                           'parser': {'copypaste_shuffle_buffer_size': 4}},
            'validation_data': {'input_path': records, 'global_batch_size': 2,
                                'parser': {
                                    'segmentation_groundtruth_padded_size':
                                        [size, size]}}},
        'trainer': {'train_steps': 2, 'steps_per_loop': 1,
                    'summary_interval': 1, 'checkpoint_interval': 2,
                    'validation_interval': 2, 'validation_steps': 1},
    }, is_strict=True)
    params.validate()
    params.lock()
    model_dir = str(tmp_path / 'model')
    tf_keras.utils.set_random_seed(0)
    # A real strategy, as the train CLI makes: EMA swaps weights under one.
    strategy = tf.distribute.OneDeviceStrategy('/cpu:0')
    with strategy.scope():
        task = task_factory.get_task(params.task, logging_dir=model_dir)
    model, logs = train_lib.run_experiment(
        distribution_strategy=strategy, task=task,
        mode='train_and_eval', params=params, model_dir=model_dir,
        run_post_eval=True)
    assert model.backbone.count_params() == 55_205_440
    assert tf.train.latest_checkpoint(model_dir).endswith('ckpt-2')
    assert 0.0 <= float(logs['panoptic_quality/All_pq']) <= 1.0
    for name in ('center_loss', 'mask_bce_loss', 'mask_dice_loss'):
        assert np.isfinite(float(logs[name])) and float(logs[name]) > 0, logs
