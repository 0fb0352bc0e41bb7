"""MaskConverFPN decoder: factory build, hand-counted parameters, values
against hand arithmetic and a numpy re-implementation, config, gradients."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.vision.modeling.decoders import factory

from layer_test_utils import (assert_config_round_trip, count,
                              run_layer_test)
from maskconver_tf.configs import decoders
from maskconver_tf.configs import maskconver
# Imported for its registration of 'maskconver_fpn'.
from maskconver_tf.modeling.decoders import maskconver_fpn
from maskconver_tf.modeling.decoders.maskconver_fpn import MaskConverFPN

# ResNet-UNet endpoints at a 128 px input.
RESNET_UNET_SPECS = {
    '2': tf.TensorShape([None, 32, 32, 256]),
    '3': tf.TensorShape([None, 16, 16, 384]),
    '4': tf.TensorShape([None, 8, 8, 384]),
    '5': tf.TensorShape([None, 4, 4, 384]),
}
SIZES = {'3': 16, '4': 8, '5': 4, '6': 2, '7': 1}


def _model_config(**fpn_kwargs):
    config = maskconver.MultiScaleMaskConverModel(min_level=3, max_level=7)
    config.decoder = decoders.Decoder(
        type='maskconver_fpn',
        maskconver_fpn=decoders.MaskConverFPN(num_filters=256, **fpn_kwargs))
    return config


def _features(specs, seed=0):
    rng = np.random.RandomState(seed)
    return {k: tf.constant(rng.randn(1, *v[1:]), tf.float32)
            for k, v in specs.items()}


def _build_and_check_shapes(config):
    decoder = factory.build_decoder(
        RESNET_UNET_SPECS, config,
        l2_regularizer=tf_keras.regularizers.l2(1e-4))
    assert isinstance(decoder, MaskConverFPN)
    expected = {k: [None, s, s, 256] for k, s in SIZES.items()}
    assert {k: v.as_list() for k, v in decoder.output_specs.items()} == expected
    out = decoder(_features(RESNET_UNET_SPECS))
    assert {k: v.shape.as_list() for k, v in out.items()} == {
        k: [1, s, s, 256] for k, s in SIZES.items()}
    for level in ('6', '7'):
        extra = decoder._extra_convs[level]
        assert extra.strides == (2, 2) and extra.kernel_size == (3, 3)
    return decoder


def test_factory_concat_separable_layernorm_reference_model():
    """The reference multi-scale model's FPN (concat, separable 7x7, LN)."""
    decoder = _build_and_check_shapes(
        _model_config(use_separable_conv=True, fusion_type='concat'))
    # Concat widths into the post-hoc convs: 256 at the top level, then
    # one more 256 block per level down.
    for level, width in (('5', 256), ('4', 512), ('3', 768)):
        conv = decoder._post_hoc_convs[level]
        assert conv.depthwise_kernel.shape == (7, 7, width, 1)
        assert conv.pointwise_kernel.shape == (1, 1, width, 256)
    norms = [m for m in decoder.submodules
             if isinstance(m, tf_keras.layers.LayerNormalization)]
    assert len(norms) == 5
    assert all(n.epsilon == 1e-6 for n in norms)
    # L2 on both kernels of each of the 8 separable convs.
    assert len(decoder.losses) == 16

    lateral = 1 * 1 * 384 + 384 * 256 + 256  # Separable 1x1 on 384.
    post_hoc = ((49 * 256 + 256 * 256 + 256)     # Level 5, 256 in.
                + (49 * 512 + 512 * 256 + 256)   # Level 4, 512 in.
                + (49 * 768 + 768 * 256 + 256))  # Level 3, 768 in.
    extra = 9 * 256 + 256 * 256 + 256  # Separable 3x3 on 256.
    layer_norm = 2 * 256
    expected = 3 * lateral + post_hoc + 2 * extra + 5 * layer_norm
    assert expected == 904_832
    assert count(decoder.trainable_weights) == expected
    assert decoder.count_params() == expected


def test_factory_sum_conv_batchnorm():
    """Plain Conv2D 1x1 / 3x3, sum fusion, (sync) BatchNorm."""
    decoder = _build_and_check_shapes(
        _model_config(use_separable_conv=False, fusion_type='sum',
                      use_layer_norm=False))
    for level in ('3', '4', '5'):
        assert decoder._post_hoc_convs[level].kernel.shape == (3, 3, 256, 256)
    # The model config's norm_activation: sync BN, momentum 0.
    norms = [m for m in decoder.submodules if isinstance(
        m, tf_keras.layers.experimental.SyncBatchNormalization)]
    assert len(norms) == 5
    assert all(n.momentum == 0.0 and n.epsilon == 1e-3 for n in norms)
    assert len(decoder.losses) == 8

    lateral = 384 * 256 + 256
    post_hoc = 9 * 256 * 256 + 256
    extra = 9 * 256 * 256 + 256
    batch_norm = 2 * 256  # gamma, beta (+ 2 * 256 moving statistics).
    trainable = 3 * lateral + 3 * post_hoc + 2 * extra + 5 * batch_norm
    assert trainable == 3_248_640
    assert count(decoder.trainable_weights) == trainable
    assert decoder.count_params() == trainable + 5 * 2 * 256 == 3_251_200


def _set(layer, *values):
    for w, v in zip(layer.weights, values):
        w.assign(np.broadcast_to(np.asarray(v, np.float32), w.shape))


@pytest.mark.parametrize('use_keras_layer', [False, True])
@pytest.mark.parametrize('fusion_type', ['sum', 'concat'])
def test_values_by_hand(fusion_type, use_keras_layer):
    """Levels 3 (2x4) and 4 (1x2), one filter, ones kernels; BN set to the
    identity. Checks that the upsampled feature is the unsmoothed one and
    that only the second extra level sees the activation."""
    eps = 1e-3
    decoder = MaskConverFPN(min_level=3, max_level=6, num_filters=1,
                            fusion_type=fusion_type,
                            use_keras_layer=use_keras_layer, norm_epsilon=eps)
    inputs = {'3': tf.ones([1, 2, 4, 1]),
              '4': tf.constant([[[[-2.], [4.]]]])}
    decoder(inputs)
    for level in ('3', '4'):
        _set(decoder._lateral_convs[level], 1., 0.)
    # A large bias: an upsampled smoothed level 4 would show it.
    _set(decoder._post_hoc_convs['4'], 1., -100.)
    if fusion_type == 'sum':
        _set(decoder._post_hoc_convs['3'], 1., 0.)
    else:
        # Channels [upsampled level 4, lateral 3] weighted 1 and 10.
        assert decoder._post_hoc_convs['3'].kernel.shape == (3, 3, 2, 1)
        _set(decoder._post_hoc_convs['3'],
             np.array([1., 10.]).reshape(1, 1, 2, 1), 0.)
    for level in ('5', '6'):
        _set(decoder._extra_convs[level], 1., 0.5)
    for norm in decoder._norms.values():
        _set(norm, 1., 0., 0., 1. - eps)  # gamma, beta, mean, variance.

    out = decoder(inputs, training=False)
    # x3 = nearest_2x([-2, 4]) + 1 per pixel = [-1, -1, 5, 5] on both rows
    # (concat: -2 + 10, -2 + 10, 4 + 10, 4 + 10 = [8, 8, 14, 14]); the 3x3
    # ones conv sums a 2-row, 3-column window with zero padding.
    row3 = ([-4., 6., 18., 20.] if fusion_type == 'sum'
            else [32., 60., 72., 56.])
    expected = {
        '3': [[row3, row3]],
        '4': [[[-2. + 4. - 100.] * 2]],       # Both pixels in every window.
        '5': [[[2 * -98. + 0.5]]],            # Raw level 4, no activation.
        '6': [[[max(2 * -98. + 0.5, 0.) + 0.5]]],  # relu(level 5) = 0.
    }
    for level, values in expected.items():
        np.testing.assert_allclose(out[level].numpy()[..., 0],
                                   np.array(values), rtol=1e-5, atol=1e-5)


# numpy re-implementation of the spec ----------------------------------------
def _np_conv(x, kernel, stride=1, depthwise=False):
    """NHWC conv with TF 'same' padding; kernel [kh, kw, C_in, C_out or 1]."""
    kh, kw = kernel.shape[:2]
    _, h, w, _ = x.shape
    oh, ow = -(-h // stride), -(-w // stride)

    def pads(n, k, o):
        total = max((o - 1) * stride + k - n, 0)
        return total // 2, total - total // 2

    xp = np.pad(x, [(0, 0), pads(h, kh, oh), pads(w, kw, ow), (0, 0)])
    out = 0.
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i:i + stride * oh:stride, j:j + stride * ow:stride]
            out = out + (patch * kernel[i, j, :, 0] if depthwise
                         else patch @ kernel[i, j])
    return out


def _np_apply_conv(layer, x, stride=1):
    if isinstance(layer, tf_keras.layers.SeparableConv2D):
        depthwise, pointwise, bias = [w.numpy() for w in layer.weights]
        x = _np_conv(x, depthwise, stride, depthwise=True)
        return _np_conv(x, pointwise) + bias
    kernel, bias = [w.numpy() for w in layer.weights]
    return _np_conv(x, kernel, stride) + bias


def _np_norm(layer, x):
    if isinstance(layer, tf_keras.layers.LayerNormalization):
        gamma, beta = [w.numpy() for w in layer.weights]
        mean = x.mean(-1, keepdims=True)
        var = x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-6) * gamma + beta
    gamma, beta, mean, var = [w.numpy() for w in layer.weights]
    return (x - mean) / np.sqrt(var + layer.epsilon) * gamma + beta


def _np_fpn(decoder, inputs, fusion_type, min_level, top, max_level):
    x = _np_apply_conv(decoder._lateral_convs[str(top)], inputs[str(top)])
    feats = {top: _np_apply_conv(decoder._post_hoc_convs[str(top)], x)}
    for level in range(top - 1, min_level - 1, -1):
        up = x.repeat(2, axis=1).repeat(2, axis=2)
        lateral = _np_apply_conv(decoder._lateral_convs[str(level)],
                                 inputs[str(level)])
        x = up + lateral if fusion_type == 'sum' else np.concatenate(
            [up, lateral], -1)
        feats[level] = _np_apply_conv(decoder._post_hoc_convs[str(level)], x)
    for level in range(top + 1, max_level + 1):
        below = feats[level - 1]
        if level > top + 1:
            below = np.maximum(below, 0.)
        feats[level] = _np_apply_conv(decoder._extra_convs[str(level)], below,
                                      stride=2)
    return {str(l): _np_norm(decoder._norms[str(l)], feats[l])
            for l in range(min_level, max_level + 1)}


@pytest.mark.parametrize(
    'fusion_type,use_separable_conv,use_layer_norm,use_keras_layer', [
        ('sum', False, False, False),
        ('concat', False, True, True),
        ('sum', True, True, True),
        ('concat', True, False, False),
    ])
def test_matches_numpy_reference(fusion_type, use_separable_conv,
                                 use_layer_norm, use_keras_layer):
    """Three input levels (top 5, min 3) plus extra levels 6 and 7; every
    weight set to known (seeded) values."""
    specs = {'2': [None, 16, 16, 2], '3': [None, 8, 8, 3],
             '4': [None, 4, 4, 5], '5': [None, 2, 2, 4]}
    inputs = _features(specs, seed=1)
    decoder = MaskConverFPN(
        min_level=3, max_level=7, num_filters=2, fusion_type=fusion_type,
        use_separable_conv=use_separable_conv, depthwise_kernel_size=5,
        use_keras_layer=use_keras_layer, use_layer_norm=use_layer_norm)
    decoder(inputs)
    rng = np.random.RandomState(2)
    for w in decoder.weights:
        low = 0.5 if 'moving_variance' in w.name else -1.
        w.assign(rng.uniform(low, 1.5, w.shape).astype(np.float32))
    out = decoder(inputs, training=False)
    expected = _np_fpn(decoder, {k: v.numpy() for k, v in inputs.items()},
                       fusion_type, 3, 5, 7)
    assert sorted(out) == sorted(expected) == ['3', '4', '5', '6', '7']
    for level in expected:
        np.testing.assert_allclose(out[level].numpy(), expected[level],
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('kwargs', [
    dict(fusion_type='concat', use_separable_conv=True, use_layer_norm=True,
         use_keras_layer=True, activation='gelu'),
    dict(fusion_type='sum', use_sync_bn=True, norm_momentum=0.9),
])
def test_config_round_trip_and_gradients(kwargs):
    features = _features({'3': [None, 8, 8, 3], '4': [None, 4, 4, 5]})
    decoder = MaskConverFPN(
        min_level=3, max_level=5, num_filters=4,
        kernel_regularizer=tf_keras.regularizers.l2(1e-4),
        bias_regularizer=tf_keras.regularizers.l2(1e-5), **kwargs)
    run_layer_test(decoder, (features,), expected_shapes={
        '3': [1, 8, 8, 4], '4': [1, 4, 4, 4], '5': [1, 2, 2, 4]})
    assert decoder.get_config()['input_specs'] is None


def test_factory_built_config_round_trip_keeps_output_specs():
    decoder = factory.build_decoder(
        RESNET_UNET_SPECS, _model_config(use_separable_conv=True,
                                         fusion_type='concat'))
    features = _features(RESNET_UNET_SPECS)
    decoder(features)
    clone = assert_config_round_trip(decoder, (features,),
                                     dict(training=False))
    assert clone.output_specs == decoder.output_specs


def test_bad_inputs():
    with pytest.raises(ValueError, match="fusion_type 'add'"):
        MaskConverFPN(fusion_type='add')
    features = _features({'4': [None, 4, 4, 3], '5': [None, 2, 2, 3]})
    with pytest.raises(ValueError,
                       match=r'min_level 3 .*input levels \[4, 5\]'):
        MaskConverFPN(min_level=3)(features)
    with pytest.raises(ValueError, match=r'input levels \[4, 5\]'):
        MaskConverFPN(input_specs={'4': [None, 4, 4, 3], '5': [None, 2, 2, 3]})
    gap = _features({'3': [None, 8, 8, 3], '5': [None, 2, 2, 3]})
    with pytest.raises(ValueError, match=r'\[3, 5\] lack levels \[4\]'):
        MaskConverFPN(min_level=3)(gap)
    config = _model_config()
    config.decoder.type = 'fpn'
    with pytest.raises(ValueError, match="'fpn' given to the maskconver_fpn"):
        maskconver_fpn.build_maskconver_fpn_decoder(RESNET_UNET_SPECS, config)
