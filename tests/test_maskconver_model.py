"""MaskConverModel / MultiScaleMaskConverModel built by the factory."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from layer_test_utils import (assert_all_variables_get_gradients,
                              assert_config_round_trip, count)
from maskconver_tf.configs import maskconver as maskconver_cfg
from maskconver_tf.data.descriptor import DatasetDescriptor
from maskconver_tf.modeling import factory

SIZE = 64
K = 50


def _specs(size=SIZE):
    return tf_keras.layers.InputSpec(shape=[None, size, size, 3])


def _mobile(size=SIZE, name='maskconver_mobilenet_mh_coco', **overrides):
    config = maskconver_cfg.model_config_for(name, size)
    config.override(overrides, is_strict=True)
    descriptor = DatasetDescriptor.builtin(maskconver_cfg.dataset_for(name))
    return factory.build_maskconver_model(
        _specs(size), config, tf_keras.regularizers.l2(5e-6),
        descriptor=descriptor)


def _targets(batch, grid, k=K, num_classes=201, seed=0):
    rng = np.random.RandomState(seed)
    yx = tf.constant(rng.randint(0, grid, size=[batch, k, 2]), tf.int32)
    classes = rng.randint(1, num_classes, size=[batch, k])
    classes[:, k // 2:] = -1  # Padding slots.
    return yx, tf.constant(classes, tf.int32)


@pytest.fixture(scope='module')
def mobile():
    # Seeded: an unseeded init left near-ties in the random model's mask
    # argmax that float .tflite broke differently (CI, category masks 15%).
    tf_keras.utils.set_random_seed(0)
    return _mobile()


def test_reference_mobile_parameters(mobile):
    assert count(mobile.trainable_weights) == 3_441_897
    assert count(mobile.weights) == 3_480_425
    items = mobile.checkpoint_items
    got = {k: count(v.trainable_weights) for k, v in items.items()}
    assert got == {'backbone': 1_633_504, 'decoder': 916_288,
                   'class_head': 226_761, 'center_head': 240_896,
                   'mask_feature_head': 240_896,
                   'mask_embedding_generator': 51_456 + 132_096}
    # No classification tail: the backbone's outputs are its endpoints.
    assert sorted(mobile.backbone.output) == ['2', '3', '4']


def test_weight_decay_placement(mobile):
    # Backbone convs (MG), ASPP 1x1 convs (MG; depthwise not regularised),
    # per head 1 low-level + 2 tower 1x1 + classifier, MLP 2 Dense + table.
    regularised = len(mobile.backbone.losses) + len(mobile.decoder.losses)
    assert len(mobile.class_head.losses) == 4
    assert len(mobile.mask_embedding_generator.losses) == 3
    assert len(mobile.losses) == regularised + 3 * 4 + 3


def test_training_outputs_and_gradients(mobile):
    images = tf.random.stateless_normal([2, SIZE, SIZE, 3], seed=[0, 1])
    yx, classes = _targets(2, SIZE // 8)
    out = mobile(images, center_indices=yx, classes=classes, training=True)
    assert {k: (v.shape.as_list(), v.dtype) for k, v in out.items()} == {
        'class_heatmaps': ([2, 8, 8, 201], tf.float32),
        'mask_logits': ([2, 8, 8, K], tf.float32)}
    # Prior 0.1 from the class-head bias.
    assert abs(float(tf.reduce_mean(tf.sigmoid(out['class_heatmaps'])))
               - 0.1) < 0.05
    assert_all_variables_get_gradients(
        mobile, (images,), dict(center_indices=yx, classes=classes))


def test_teacher_forced_logits_use_the_heads(mobile):
    images = tf.random.stateless_normal([1, SIZE, SIZE, 3], seed=[2, 3])
    yx, classes = _targets(1, SIZE // 8)
    out = mobile(images, center_indices=yx, classes=classes, training=False)
    _, centers, pixels = mobile.dense_outputs(images, training=False)
    m = mobile.mask_embedding_generator.mask_embeddings(centers, yx, classes)
    np.testing.assert_allclose(
        out['mask_logits'].numpy(),
        np.einsum('bkc,bhwc->bhwk', m.numpy(), pixels.numpy()),
        rtol=1e-4, atol=1e-3)


def test_inference_outputs_and_round_trip(mobile):
    images = tf.random.stateless_normal([1, SIZE, SIZE, 3], seed=[4, 5])
    out = mobile(images, training=False)
    shapes = {k: (v.shape.as_list(), v.dtype) for k, v in out.items()}
    assert shapes == {
        'class_heatmaps': ([1, 8, 8, 201], tf.float32),
        'mask_logits': ([1, 8, 8, K], tf.float32),
        'classes': ([1, K], tf.int32), 'scores': ([1, K], tf.float32),
        'category_mask': ([1, SIZE, SIZE], tf.int32),
        'instance_mask': ([1, SIZE, SIZE], tf.int32)}
    # Outputs carry dataset ids: every non-void id is a COCO category.
    coco = DatasetDescriptor.builtin('coco')
    ids = set(np.unique(out['category_mask'].numpy())) - {0}
    assert ids <= set(coco.ids)
    assert_config_round_trip(mobile, (images,), dict(training=False),
                             atol=1e-5)
    with pytest.raises(ValueError, match='center_indices'):
        mobile(images, training=True)


def test_tflite_float_builtins_only(mobile):
    from export_test_utils import agreement
    from maskconver_tf.serving import tflite_conversion as tc
    images = tf.random.stateless_normal([1, SIZE, SIZE, 3], seed=[6, 7])
    keys = ['category_mask', 'instance_mask', 'classes', 'scores',
            'class_heatmaps']

    @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3])])
    def serve(x):
        out = mobile(x, training=False)
        return {k: out[k] for k in keys}

    # No trackable object: with the Keras model the converter saves it with
    # every layer's traces first (67 s instead of 6 s).
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    content = converter.convert()
    assert not tc.custom_ops(tc.list_ops(content))
    # Without a signature the outputs are unnamed: find them by rank and dtype.
    lite = list(tc.run_tflite(tc.make_interpreter(content),
                              images.numpy()).values())
    keras = serve(images)
    heatmaps = [o for o in lite if o.ndim == 4 and o.dtype == np.float32]
    assert len(heatmaps) == 1
    np.testing.assert_allclose(heatmaps[0], keras['class_heatmaps'].numpy(),
                               atol=1e-3)
    masks = [o for o in lite if o.ndim == 3 and o.shape[1:] == (SIZE, SIZE)]
    assert len(masks) == 2 and all(m.dtype == np.int32 for m in masks)
    for key in ['category_mask', 'instance_mask']:
        agree = [agreement(m, keras[key]) for m in masks]
        assert max(agree) > 0.999, (key, agree)


@pytest.mark.parametrize('policy', ['mixed_float16', 'mixed_bfloat16'])
def test_mixed_precision_outputs_float32(policy):
    tf_keras.mixed_precision.set_global_policy(policy)
    try:
        model = _mobile(name='maskconver_shapes')
        images = tf.random.stateless_normal([1, SIZE, SIZE, 3], seed=[8, 9])
        yx, classes = _targets(1, SIZE // 8, num_classes=8)
        out = model(images, center_indices=yx, classes=classes,
                    training=True)
        assert model.class_head.compute_dtype == policy.split('_')[1]
        for v in out.values():
            assert v.dtype == tf.float32
            assert np.isfinite(v.numpy()).all()
        out = model(images, training=False)
        assert {k: v.dtype for k, v in out.items()} == {
            'class_heatmaps': tf.float32, 'mask_logits': tf.float32,
            'classes': tf.int32, 'scores': tf.float32,
            'category_mask': tf.int32, 'instance_mask': tf.int32}
    finally:
        tf_keras.mixed_precision.set_global_policy('float32')


def test_shapes_descriptor_and_class_embedding_flag():
    model = _mobile(name='maskconver_shapes',
                    mask_embedding={'use_class_embedding': False})
    assert model.class_head.get_config()['num_outputs'] == 8
    assert not any('class_embedding' in v.name for v in model.weights)
    config = maskconver_cfg.model_config_for('maskconver_shapes', SIZE)
    with pytest.raises(ValueError, match='descriptor'):
        factory.build_maskconver_model(_specs(), config)


def _small_multiscale_config(size=128):
    config = maskconver_cfg.model_config_for(
        'maskconver_r50_convnext_unet_coco', size)
    config.override({
        'num_classes': 8, 'num_instances': 6, 'embedding_size': 16,
        'backbone': {'resnet_unet': {'model_id': 18,
                                     'upsample_repeats': [1, 1, 1],
                                     'upsample_filters': [16, 16, 16],
                                     'upsample_kernel_sizes': [3, 3, 3]}},
        'decoder': {'maskconver_fpn': {'num_filters': 16}},
        'class_head': {'num_convs': 1, 'num_filters': 16,
                       'depthwise_kernel_size': 3},
        'center_head': {'num_convs': 1, 'num_filters': 16,
                        'depthwise_kernel_size': 3},
        'mask_feature_head': {'num_convs': 1, 'num_filters': 16,
                              'depthwise_kernel_size': 3},
        'mask_embedding': {'mlp_hidden_size': 32},
    }, is_strict=True)
    return config


def test_multiscale_model():
    size = 128
    model = factory.build_maskconver_model(
        _specs(size), _small_multiscale_config(size),
        tf_keras.regularizers.l2(1e-5),
        descriptor=DatasetDescriptor.builtin('shapes'))
    cells = sum((size // 2 ** l) ** 2 for l in range(3, 8))
    images = tf.random.stateless_normal([2, size, size, 3], seed=[1, 1])
    flat = tf.constant([[0, 5, 300, cells - 1, 0, 0]] * 2, tf.int32)
    classes = tf.constant([[1, 2, 5, 7, -1, -1]] * 2, tf.int32)
    out = model(images, center_indices=flat, classes=classes, training=True)
    assert {k: v.shape.as_list() for k, v in out.items()} == {
        # Mask features by pyramid fusion at level 2 (stride 4).
        'class_heatmaps': [2, cells, 8], 'mask_logits': [2, 32, 32, 6]}
    assert_all_variables_get_gradients(
        model, (images,), dict(center_indices=flat, classes=classes))
    out = model(images, training=False)
    assert out['category_mask'].shape.as_list() == [2, size, size]
    assert out['classes'].dtype == tf.int32
    # The proposals' flat indices point at their level's peak cell.
    assert model.level_grids() == [(size // 2 ** l,) * 2
                                   for l in range(3, 8)]
    proposals = model.propose(out['class_heatmaps'])
    heat = tf.sigmoid(out['class_heatmaps']).numpy()
    picked = np.take_along_axis(  # [B, K, C] at the proposals' cells
        heat, proposals['center_indices'].numpy()[..., None], axis=1)
    picked = np.take_along_axis(
        picked, proposals['classes'].numpy()[..., None], axis=-1)[..., 0]
    valid = proposals['scores'].numpy() > 0
    np.testing.assert_allclose(picked[valid],
                               proposals['scores'].numpy()[valid], atol=1e-6)
    assert_config_round_trip(model, (images,), dict(training=False),
                             atol=1e-4)
    assert set(model.checkpoint_items) == {
        'backbone', 'decoder', 'class_head', 'center_head',
        'mask_feature_head', 'mask_embedding_generator'}
