"""ConvNeXtBlock and ConvNeXt-UNet, against Model Garden's ResNet-UNet."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.vision.modeling.backbones import resnet
from official.vision.modeling.backbones import resnet_unet

from layer_test_utils import count, run_layer_test
from maskconver_tf.modeling.decoders.convnext_unet import ConvNeXtUNet
from maskconver_tf.modeling.layers.convnext_block import ConvNeXtBlock


def test_block_contract_and_near_identity_at_init():
    x = tf.random.stateless_normal([2, 6, 6, 16], seed=[1, 2])
    block = ConvNeXtBlock(16, kernel_size=3, se_ratio=0.25,
                          stochastic_depth_drop_rate=0.1,
                          kernel_regularizer=tf_keras.regularizers.l2(1e-4))
    y = run_layer_test(block, (x,), expected_shapes=[2, 6, 6, 16])
    # Layer scale 1e-6: the residual branch is tiny at initialisation.
    np.testing.assert_allclose(y.numpy(), x.numpy(), atol=1e-4)
    assert np.abs(y.numpy() - x.numpy()).max() > 0
    # L2 on expand, project and the two SE convs; not on the depthwise kernel.
    assert len(block.losses) == 4


@pytest.mark.parametrize('se_ratio', [0.0625, 0.0])
def test_block_matches_model_garden(se_ratio):
    """Same weights -> same outputs as Model Garden's resnet_unet block."""
    x = tf.random.stateless_normal([1, 5, 5, 32], seed=[3, 4])
    ours = ConvNeXtBlock(32, kernel_size=5, se_ratio=se_ratio,
                         layer_scale_init_value=0.5)
    theirs = resnet_unet.ConvNeXtBlock(32, kernel_size=5, se_ratio=se_ratio,
                                       layer_scale_init_value=0.5)
    ours(x)
    theirs(x)
    pairs = [(theirs.depthwise_conv, ours._depthwise), (theirs.norm, ours._norm),
             (theirs.pointwise_conv1, ours._expand),
             (theirs.pointwise_conv2, ours._project)]
    if se_ratio:
        pairs.append((theirs._squeeze_excitation, ours._squeeze_excitation))
    for t, o in pairs:
        t.set_weights(o.get_weights())
    theirs.gamma.assign(tf.reshape(tf.range(32, dtype=tf.float32) / 32,
                                   [1, 1, 1, 32]))
    ours._gamma.assign(tf.range(32, dtype=tf.float32) / 32)
    assert count(ours.weights) == count(theirs.weights)
    np.testing.assert_allclose(ours(x).numpy(), theirs(x).numpy(), atol=1e-5)


def test_decoder_contract_small():
    rng = np.random.RandomState(0)
    features = {'2': tf.constant(rng.randn(1, 16, 16, 8), tf.float32),
                '3': tf.constant(rng.randn(1, 8, 8, 12), tf.float32),
                '4': tf.constant(rng.randn(1, 4, 4, 16), tf.float32)}
    decoder = ConvNeXtUNet(repeats=[2, 1], filters=[24, 16],
                           kernel_sizes=[3, 5], stochastic_depth_drop_rate=0.1)
    out = run_layer_test(decoder, (features,), expected_shapes={
        '2': [1, 16, 16, 8], '3': [1, 8, 8, 16], '4': [1, 4, 4, 24]})
    # Levels below the processed ones pass through untouched.
    np.testing.assert_array_equal(out['2'].numpy(), features['2'].numpy())
    with pytest.raises(ValueError, match='one entry per level'):
        ConvNeXtUNet(repeats=[1, 1], filters=[8], kernel_sizes=[3, 3])


def test_resnet50_convnext_unet_equals_model_garden_resnet_unet():
    """Model Garden's resnet_unet test network: 55,205,440 parameters, same
    endpoints, and (weights copied) the same outputs."""
    size = 64
    specs = tf_keras.layers.InputSpec(shape=[None, size, size, 3])
    reference = resnet_unet.ResNetUNet(
        model_id=50, input_specs=specs, upsample_repeats=[18, 1, 1],
        upsample_filters=[384, 384, 384], upsample_kernel_sizes=[7, 7, 7])
    backbone = resnet.ResNet(model_id=50, input_specs=specs)
    decoder = ConvNeXtUNet(repeats=[18, 1, 1], filters=[384, 384, 384],
                           kernel_sizes=[7, 7, 7], se_ratio=0.0625,
                           activation='relu')
    images = tf.random.stateless_uniform([1, size, size, 3], seed=[5, 6])
    ours = decoder(backbone(images))

    assert reference.count_params() == 55_205_440
    assert backbone.count_params() + decoder.count_params() == 55_205_440
    theirs = reference(images)
    assert {k: v.shape.as_list() for k, v in ours.items()} == {
        k: v.shape.as_list() for k, v in theirs.items()} == {
        '2': [1, 16, 16, 256], '3': [1, 8, 8, 384], '4': [1, 4, 4, 384],
        '5': [1, 2, 2, 384]}

    # Both create their variables in the same order (trunk, then per level:
    # lateral conv + norm, top-down conv + norm, blocks); eager variables
    # carry a creation counter at the end of their unique id.
    created = lambda v: int(v._unique_id.rsplit('_', 1)[1])
    ours_vars = sorted(backbone.weights + decoder.weights, key=created)
    theirs_vars = sorted(reference.weights, key=created)
    assert len(ours_vars) == len(theirs_vars)
    for o, t in zip(ours_vars, theirs_vars):
        o.assign(tf.reshape(t, o.shape))
    ours = decoder(backbone(images, training=False), training=False)
    theirs = reference(images, training=False)
    for level in ours:
        np.testing.assert_allclose(ours[level].numpy(), theirs[level].numpy(),
                                   rtol=1e-4, atol=1e-4)
