"""MaskConverHead and MultiScaleMaskConverHead."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from layer_test_utils import count, run_layer_test
from maskconver_tf.modeling.heads.maskconver_head import MaskConverHead
from maskconver_tf.modeling.heads.multiscale_maskconver_head import (
    MultiScaleMaskConverHead)


def _features(seed=0, low_channels=6, dec_channels=8, low_hw=8, dec_hw=4):
    rng = np.random.RandomState(seed)
    backbone = {'3': tf.constant(rng.randn(2, low_hw, low_hw, low_channels),
                                 tf.float32)}
    decoder = {'4': tf.constant(rng.randn(2, dec_hw, dec_hw, dec_channels),
                                tf.float32)}
    return backbone, decoder


@pytest.mark.parametrize('fusion,use_layer_norm,depthwise', [
    ('sum', False, True), ('concat', True, True), (None, False, False)])
def test_layer_contract(fusion, use_layer_norm, depthwise):
    head = MaskConverHead(
        num_outputs=5, level=4, low_level=3, low_level_num_filters=8,
        feature_fusion=fusion, num_convs=2, num_filters=12,
        use_depthwise_convolution=depthwise, depthwise_kernel_size=3,
        use_layer_norm=use_layer_norm, bias_initializer=-2.19,
        kernel_regularizer=tf_keras.regularizers.l2(1e-4))
    size = 4 if fusion is None else 8
    run_layer_test(head, (_features(),), expected_shapes=[2, size, size, 5],
                   expected_dtypes=tf.float32)


@pytest.mark.parametrize('fusion', ['sum', 'concat'])
def test_fusion_numbers(fusion):
    """num_convs 0, same-size levels: out = fuse(x, relu(BN(1x1(low)))) W + b."""
    head = MaskConverHead(num_outputs=3, low_level_num_filters=8,
                          feature_fusion=fusion, num_convs=0,
                          bias_initializer=-2.19)
    backbone, decoder = _features(low_channels=6, dec_channels=8, low_hw=4)
    out = head((backbone, decoder), training=False).numpy()
    low = backbone['3'].numpy() @ head._low_level_conv.kernel.numpy()[0, 0]
    low = np.maximum(low / np.sqrt(1 + 1e-3), 0)  # BN at init statistics.
    x = decoder['4'].numpy()
    x = x + low if fusion == 'sum' else np.concatenate([x, low], -1)
    want = x @ head._classifier.kernel.numpy()[0, 0] - 2.19
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(head._classifier.bias.numpy(), -2.19)


def test_reference_class_head_parameters():
    """Reference class head: 64-ch low level, 256-ch ASPP, 201 classes."""
    head = MaskConverHead(num_outputs=201, bias_initializer=-2.19)
    backbone = {'3': tf.zeros([1, 8, 8, 64])}
    decoder = {'4': tf.zeros([1, 4, 4, 256])}
    logits = head((backbone, decoder))
    assert count(head.trainable_weights) == 226_761
    assert count(head.weights) == 229_321
    # Zero features -> BN(0) = 0 everywhere -> logits are the bias.
    np.testing.assert_allclose(logits.numpy(), -2.19, atol=1e-6)


def test_regularizer_placement():
    head = MaskConverHead(num_outputs=4, low_level_num_filters=8,
                          num_filters=8, depthwise_kernel_size=3,
                          kernel_regularizer=tf_keras.regularizers.l2(1.0))
    head(_features())
    # low-level 1x1, two tower 1x1 convs, classifier; no depthwise kernels.
    assert len(head.losses) == 4


def test_bad_fusion():
    with pytest.raises(ValueError, match='feature_fusion'):
        MaskConverHead(num_outputs=3, feature_fusion='add')


def test_multiscale_head_shares_convs_with_per_level_norms():
    rng = np.random.RandomState(0)
    features = {str(l): tf.constant(rng.randn(2, 2 ** (7 - l), 2 ** (7 - l), 8),
                                    tf.float32) for l in range(3, 6)}
    head = MultiScaleMaskConverHead(
        num_outputs=5, min_level=3, max_level=5, num_convs=2, num_filters=8,
        depthwise_kernel_size=3, bias_initializer=-2.19)
    out = run_layer_test(head, (features,),
                         expected_shapes=[2, 16 * 16 + 8 * 8 + 4 * 4, 5])
    # Shared: 2 x (DW 3x3x8 + 1x1 8x8) + classifier 8x5+5; per level:
    # 2 x 2 LayerNorms x 16 for each of 3 levels.
    assert count(head.trainable_weights) == 2 * (72 + 64) + 45 + 3 * 4 * 16
    # Level 5 flattened row-major is the tail of the output.
    alone = MultiScaleMaskConverHead.from_config(
        {**head.get_config(), 'min_level': 5, 'max_level': 5})
    alone({'5': features['5']})
    shared = {v.name.split('/', 1)[1]: v for v in head.weights}
    for v in alone.weights:
        v.assign(shared[v.name.split('/', 1)[1]])
    np.testing.assert_allclose(
        out[:, -16:].numpy(),
        tf.reshape(alone({'5': features['5']}), [2, 16, 5]).numpy(),
        atol=1e-5)


@pytest.mark.parametrize('depthwise,num_convs', [(True, 2), (False, 2),
                                                 (True, 0)])
def test_pointwise_tail_at_gathered_pixels_equals_the_dense_head(
        depthwise, num_convs):
    """call = pointwise_tail(spatial_features); the tail of K gathered
    feature vectors is the dense output at those pixels."""
    head = MaskConverHead(num_outputs=5, low_level_num_filters=8,
                          num_convs=num_convs, num_filters=8,
                          use_depthwise_convolution=depthwise,
                          depthwise_kernel_size=3, bias_initializer=0.3)
    features = _features(seed=3, dec_channels=8)
    dense = head(features, training=False).numpy()
    spatial = head.spatial_features(features, training=False)
    np.testing.assert_array_equal(
        head.pointwise_tail(spatial, training=False).numpy(), dense)
    yx = np.array([[[0, 0], [7, 7], [3, 5]], [[2, 1], [2, 1], [6, 0]]])
    gathered = tf.gather_nd(spatial, yx, batch_dims=1)
    tail = head.pointwise_tail(gathered, training=False).numpy()
    want = dense[np.arange(2)[:, None], yx[..., 0], yx[..., 1]]
    assert tail.shape == (2, 3, 5)
    np.testing.assert_allclose(tail, want, rtol=1e-6, atol=1e-6)
    # Without the classifier: the classifier's input, 8 channels.
    pre = head.pointwise_tail(spatial, include_classifier=False)
    kernel, bias = head.classifier.kernel.numpy()[0, 0], head.classifier.bias
    np.testing.assert_allclose(pre.numpy() @ kernel + bias.numpy(), dense,
                               rtol=1e-5, atol=1e-5)


def test_pointwise_tail_refuses_gathered_features_with_upsampling():
    head = MaskConverHead(num_outputs=3, low_level_num_filters=8,
                          num_filters=8, depthwise_kernel_size=3,
                          upsample_factor=2)
    assert not head.has_pointwise_tail
    with pytest.raises(ValueError, match='upsample_factor'):
        head.pointwise_tail(tf.zeros([1, 4, 8]))
