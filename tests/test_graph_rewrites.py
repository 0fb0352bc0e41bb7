"""Graph rewrites of the export (serving/graph_rewrites.py): each one
computes the function it replaces, checked on the same inputs."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from maskconver_tf import registry_imports  # noqa: F401
from maskconver_tf.configs import maskconver as maskconver_cfg
from maskconver_tf.data.descriptor import DatasetDescriptor
from maskconver_tf.modeling import factory
from maskconver_tf.modeling.layers import post_processing
from maskconver_tf.serving import graph_rewrites

import export_test_utils

SIZE = 64


@pytest.fixture(scope='module')
def model():
    return export_test_utils.shapes_model(export_test_utils.shapes_params(SIZE))


def _mobile(**overrides):
    """The reference mobile model at SIZE px."""
    name = 'maskconver_mobilenet_mh_coco'
    config = maskconver_cfg.model_config_for(name, SIZE)
    config.override(overrides, is_strict=True)
    descriptor = DatasetDescriptor.builtin(maskconver_cfg.dataset_for(name))
    tf.keras.utils.set_random_seed(0)
    return factory.build_maskconver_model(
        tf_keras.layers.InputSpec(shape=[None, SIZE, SIZE, 3]), config,
        tf_keras.regularizers.l2(5e-6), descriptor=descriptor)


def test_merge_at_stride_is_coarse_merge_upsampled(model):
    rng = np.random.RandomState(2)
    logits = tf.constant(rng.randn(1, 8, 8, 50) * 3, tf.float32)
    classes = tf.constant(rng.randint(0, 8, (1, 50)), tf.int32)
    scores = tf.constant(np.sort(rng.rand(1, 50))[:, ::-1].copy(), tf.float32)
    config = model.panoptic_merger.get_config()
    kwargs = {k: config[k] for k in (
        'is_thing_channel', 'channel_to_id', 'object_mask_threshold',
        'overlap_threshold', 'void_prob_threshold')}
    exact = graph_rewrites.merge_at_stride(model, logits, classes, scores,
                                          (SIZE, SIZE), 1)
    ref = post_processing.panoptic_merge(
        logits, classes, scores, output_size=(SIZE, SIZE),
        small_area_threshold=config['small_area_threshold'], **kwargs)
    for key in ref:
        np.testing.assert_array_equal(exact[key], ref[key])
    coarse = graph_rewrites.merge_at_stride(model, logits, classes, scores,
                                           (SIZE, SIZE), 4)
    small = post_processing.panoptic_merge(
        logits, classes, scores, output_size=(SIZE // 4, SIZE // 4),
        small_area_threshold=config['small_area_threshold'] // 16, **kwargs)
    for key in ('category_mask', 'instance_mask'):
        up = np.repeat(np.repeat(np.asarray(small[key]), 4, 1), 4, 2)
        np.testing.assert_array_equal(coarse[key], up)
    np.testing.assert_array_equal(coarse['classes'], small['classes'])
    with pytest.raises(ValueError, match='divide'):
        graph_rewrites.merge_at_stride(model, logits, classes, scores,
                                      (SIZE, SIZE), 3)


@pytest.mark.parametrize('size', [(8, 12), (12, 12), (5, 7), (3, 4)])
def test_nearest_upsample_reads_the_floor_cell(size):
    # 3 x 4 int map; canvas pixel i reads cell min(h - 1, i * h // H): the
    # TILE path (integer factors) and the GATHER path give the same rule.
    mask = tf.reshape(tf.range(24, dtype=tf.int32), [2, 3, 4])
    got = graph_rewrites.nearest_upsample(mask, size).numpy()
    rows = [min(2, i * 3 // size[0]) for i in range(size[0])]
    cols = [min(3, j * 4 // size[1]) for j in range(size[1])]
    np.testing.assert_array_equal(got, mask.numpy()[:, rows][:, :, cols])
    if size == (12, 12):  # factors 4 and 3, hand-checked corner
        assert got[1, 11, 11] == 23 and got[1, 4, 3] == 17  # cell (1, 1)


@pytest.mark.parametrize('kernel_size,max_taps,num_tiles', [
    (7, 25, 3), (7, 9, 7), (9, 25, 5), (5, 4, 9), (30, 25, 36)])
def test_split_depthwise_conv_equals_the_conv(kernel_size, max_taps,
                                              num_tiles):
    tiles = graph_rewrites.depthwise_tiles(kernel_size, kernel_size, max_taps)
    assert len(tiles) == num_tiles
    assert all((r1 - r0) * (c1 - c0) <= max_taps for r0, r1, c0, c1 in tiles)
    rng = np.random.RandomState(kernel_size)
    x = tf.constant(rng.randn(2, 12, 10, 6), tf.float32)
    kernel = tf.constant(rng.randn(kernel_size, kernel_size, 6, 2),
                         tf.float32)
    want = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], 'SAME')
    got = graph_rewrites.split_depthwise_conv(x, kernel, max_taps)
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize('h,w,taps,top,left', [
    (1, 1, (1, 1), 0, 0), (2, 2, (3, 3), 1, 1), (1, 3, (1, 5), 0, 2),
    (3, 12, (5, 7), 2, 3), (4, 4, (7, 7), 3, 3)])
def test_split_depthwise_conv_on_inputs_smaller_than_the_kernel(h, w, taps,
                                                                top, left):
    """Top FPN levels: only taps within reach of the image stay (exactly)."""
    rng = np.random.RandomState(h * 10 + w)
    kernel = tf.constant(rng.randn(7, 7, 4, 1), tf.float32)
    cropped, got_top, got_left = graph_rewrites.reachable_taps(
        kernel, 3, 3, h, w)
    assert tuple(cropped.shape[:2]) == taps
    assert (got_top, got_left) == (top, left)
    # The crop is the centre of the kernel around the (3, 3) tap.
    np.testing.assert_array_equal(
        cropped, kernel[3 - top:3 - top + taps[0], 3 - left:3 - left + taps[1]])
    x = tf.constant(rng.randn(2, h, w, 4), tf.float32)
    bias = tf.constant(rng.randn(4), tf.float32)
    want = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], 'SAME') + bias
    got = graph_rewrites.split_depthwise_conv(x, kernel, 25, bias)
    np.testing.assert_allclose(got, want, atol=1e-4)


def _randomize_batch_norms(model, seed):
    """Gives every BatchNorm statistics far from the identity; returns the
    old values. Channel scales spread over two decades, as in trained heads."""
    rng = np.random.RandomState(seed)
    saved = []
    for layer in model.submodules:
        if graph_rewrites.is_batch_norm(layer):
            for var in layer.weights:
                saved.append((var, var.numpy()))
                shape = var.shape
                if 'variance' in var.name:
                    var.assign(10.0 ** rng.uniform(-2, 1, shape))
                elif 'gamma' in var.name:
                    var.assign(rng.uniform(0.5, 2.0, shape))
                else:
                    var.assign(rng.randn(*shape))
    assert saved
    return saved


def test_split_large_depthwise_scope_keeps_the_function(model):
    x = tf.constant(np.random.RandomState(0).randn(1, SIZE, SIZE, 3),
                    tf.float32)
    saved = _randomize_batch_norms(model, 1)
    try:
        want = model(x, training=False)
        with graph_rewrites.split_large_depthwise(model) as count:
            # 3 heads x 2 towers of 7x7; ASPP's dilated 3x3 are left alone.
            assert count == 6
            # Each split conv carries the BatchNorm after it.
            folded = [layer for layer in model.submodules
                      if 'tower_depthwise_norm' in layer.name
                      and 'call' in vars(layer)]
            assert len(folded) == 6
            got = model(x, training=False)
    finally:
        for var, value in saved:
            var.assign(value)
    for key in ('class_heatmaps', 'mask_logits'):
        scale = np.abs(np.asarray(want[key])).max()
        np.testing.assert_allclose(got[key], want[key], atol=1e-5 * scale)
    # Restored: no layer keeps the patched call.
    assert not any('call' in vars(layer) for layer in model.submodules)


def test_fold_batch_norm_matches_depthwise_then_norm():
    rng = np.random.RandomState(2)
    conv = tf_keras.layers.DepthwiseConv2D(7, padding='same', use_bias=False,
                                           depth_multiplier=2)
    norm = tf_keras.layers.BatchNormalization(epsilon=1e-3)
    x = tf.constant(rng.randn(1, 9, 11, 3), tf.float32)
    norm(conv(x))
    norm.set_weights([rng.uniform(0.5, 2, 6), rng.randn(6), rng.randn(6),
                      10.0 ** rng.uniform(-2, 1, 6)])
    want = norm(conv(x), training=False)
    kernel, bias = graph_rewrites.fold_batch_norm(conv, norm)
    got = graph_rewrites.split_depthwise_conv(x, kernel, 25, bias)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match='cannot fold'):
        graph_rewrites.fold_batch_norm(
            conv, tf_keras.layers.LayerNormalization())


@pytest.mark.parametrize('h,w,kernel_size', [(9, 11, 7), (2, 3, 7),
                                              (6, 6, 3)])
def test_depthwise_at_is_the_conv_at_those_cells(h, w, kernel_size):
    rng = np.random.RandomState(h * w)
    x = tf.constant(rng.randn(2, h, w, 5), tf.float32)
    kernel = tf.constant(rng.randn(kernel_size, kernel_size, 5, 1),
                         tf.float32)
    bias = tf.constant(rng.randn(5), tf.float32)
    # Corners (windows mostly padding), the centre, a repeated cell.
    indices = tf.constant([[[0, 0], [h - 1, w - 1], [h // 2, w // 2],
                            [0, w - 1]],
                           [[h - 1, 0], [h // 2, 1], [h // 2, 1],
                            [1, w // 2]]], tf.int32)
    dense = tf.nn.bias_add(tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1],
                                                  'SAME'), bias)
    want = tf.gather_nd(dense, indices, batch_dims=1)
    got = graph_rewrites.depthwise_at(x, kernel, indices, bias=bias)
    assert got.shape == (2, 4, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Row 0, column 0 by hand: taps (r, c) read x[r - top, c - left].
    top = (kernel_size - 1) // 2
    by_hand = bias[0] + sum(
        x[0, r - top, c - top, 0] * kernel[r, c, 0, 0]
        for r in range(top, min(kernel_size, top + h))
        for c in range(top, min(kernel_size, top + w)))
    np.testing.assert_allclose(got[0, 0, 0], by_hand, rtol=1e-5)


def test_sparse_heads_equal_the_dense_path():
    """The export's sparse heads compute `call`'s inference outputs: same
    heatmaps and proposals, mask logits to float rounding."""
    mobile = _mobile()
    images = tf.random.stateless_normal([2, SIZE, SIZE, 3], seed=[6, 7])
    # BatchNorm statistics of these images (at their initial values the
    # MobileNet's activations, hence the logits, vanish).
    for layer in mobile.submodules:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            layer.momentum = 0.0
    mobile.dense_outputs(images, training=True)
    assert graph_rewrites.supports_sparse_heads(mobile)
    sparse = graph_rewrites.sparse_heads(mobile, images)
    heatmaps, centers, pixels = mobile.dense_outputs(images, training=False)
    proposals = mobile.proposal_generator(heatmaps)
    np.testing.assert_array_equal(sparse['class_heatmaps'].numpy(),
                                  heatmaps.numpy())
    for key in ('classes', 'scores', 'center_indices'):
        np.testing.assert_array_equal(sparse[key].numpy(),
                                      proposals[key].numpy())
    dense = mobile.mask_embedding_generator(
        centers, pixels, proposals['center_indices'], proposals['classes'])
    scale = float(tf.reduce_max(tf.abs(dense)))
    assert scale > 0.1
    np.testing.assert_allclose(sparse['mask_logits'].numpy(), dense.numpy(),
                               rtol=1e-4, atol=1e-5 * scale)


def test_sparse_heads_need_pointwise_tails():
    model = _mobile(**{'mask_feature_head': {'upsample_factor': 2}})
    assert not graph_rewrites.supports_sparse_heads(model)
    with pytest.raises(ValueError, match='1x1 classifiers'):
        graph_rewrites.sparse_heads(model, tf.zeros([1, SIZE, SIZE, 3]))
