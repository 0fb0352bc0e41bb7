"""MaskEmbeddingGenerator: gather, class embedding, MLP, dot product."""

import numpy as np
import pytest
import tensorflow as tf

from layer_test_utils import run_layer_test
from maskconver_tf.modeling.layers.mask_embedding_generator import (
    MaskEmbeddingGenerator)

B, H, W, E, K, C = 2, 5, 6, 8, 4, 7


def _inputs(seed=0):
    rng = np.random.RandomState(seed)
    centers = tf.constant(rng.randn(B, H, W, E), tf.float32)
    pixels = tf.constant(rng.randn(B, H, W, E), tf.float32)
    indices = tf.constant([[[0, 0], [4, 5], [2, 3], [2, 3]],
                           [[1, 1], [3, 0], [0, 5], [0, 0]]], tf.int32)
    classes = tf.constant([[1, 6, 2, 3], [4, 0, 5, -1]], tf.int32)
    return centers, pixels, indices, classes


def _numpy_mask_embeddings(layer, centers, indices, classes, combination):
    """The generator's math written out in numpy from its weights."""
    w = {v.name.split('/')[-2] + '/' + v.name.split('/')[-1].split(':')[0]:
         v.numpy() for v in layer.weights}
    centers, indices, classes = (np.asarray(centers), np.asarray(indices),
                                 np.asarray(classes))
    b = np.arange(B)[:, None]
    e = centers[b, indices[..., 0], indices[..., 1]]  # [B, K, E]
    if 'class_embedding/embeddings' in w:
        c = w['class_embedding/embeddings'][np.maximum(classes, 0)]
        e = e * c if combination == 'product' else e + c
    x = e @ w['mlp_hidden/kernel'] + w['mlp_hidden/bias']
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    x = (x - mean) / np.sqrt(var + 1e-6) * w['mlp_norm/gamma'] + w[
        'mlp_norm/beta']
    x = np.maximum(x, 0)
    return x @ w['mlp_output/kernel'] + w['mlp_output/bias']


@pytest.mark.parametrize('combination', ['product', 'sum'])
def test_logits_are_einsum_of_mlp_embeddings(combination):
    layer = MaskEmbeddingGenerator(num_classes=C, embedding_size=E,
                                   mlp_hidden_size=16, combination=combination)
    centers, pixels, indices, classes = _inputs()
    logits = run_layer_test(layer, (centers, pixels, indices, classes),
                            expected_shapes=[B, H, W, K],
                            expected_dtypes=tf.float32)
    m = _numpy_mask_embeddings(layer, centers, indices, classes, combination)
    np.testing.assert_allclose(
        layer.mask_embeddings(centers, indices, classes).numpy(), m,
        rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        logits.numpy(), np.einsum('bkc,bhwc->bhwk', m, pixels.numpy()),
        rtol=1e-4, atol=1e-4)


def test_same_center_different_classes_differ():
    centers, pixels, indices, classes = _inputs()
    # Slots 2 and 3 of image 0 share (y, x) = (2, 3), classes 2 and 3.
    with_class = MaskEmbeddingGenerator(num_classes=C, embedding_size=E)
    m = with_class.mask_embeddings(centers, indices, classes).numpy()
    assert np.abs(m[0, 2] - m[0, 3]).max() > 1e-3
    logits = with_class(centers, pixels, indices, classes).numpy()
    assert np.abs(logits[0, ..., 2] - logits[0, ..., 3]).max() > 1e-3

    without = MaskEmbeddingGenerator(num_classes=C, embedding_size=E,
                                     use_class_embedding=False)
    m = without.mask_embeddings(centers, indices, classes).numpy()
    np.testing.assert_array_equal(m[0, 2], m[0, 3])
    assert len(without.trainable_weights) == 6  # MLP only, no table.
    assert not any('class_embedding' in v.name for v in without.weights)


def test_flat_indices_match_yx_indices():
    layer = MaskEmbeddingGenerator(num_classes=C, embedding_size=E,
                                   combination='sum')
    centers, pixels, indices, classes = _inputs()
    by_yx = layer(centers, pixels, indices, classes)
    flat = indices[..., 0] * W + indices[..., 1]
    by_flat = run_layer_test(
        layer, (tf.reshape(centers, [B, H * W, E]), pixels, flat, classes),
        expected_shapes=[B, H, W, K])
    np.testing.assert_allclose(by_yx.numpy(), by_flat.numpy(), atol=1e-5)


def test_padding_class_reads_row_zero_and_bad_combination():
    layer = MaskEmbeddingGenerator(num_classes=C, embedding_size=E)
    centers, _, indices, _ = _inputs()
    pad = layer.mask_embeddings(centers, indices, -tf.ones([B, K], tf.int32))
    zero = layer.mask_embeddings(centers, indices, tf.zeros([B, K], tf.int32))
    np.testing.assert_array_equal(pad.numpy(), zero.numpy())
    with pytest.raises(ValueError, match='combination'):
        MaskEmbeddingGenerator(num_classes=C, combination='concat')


def test_logits_through_linear_fold_the_pixel_classifier():
    """<m, W f + b> = <W^T m, f> + <m, b>: hand-checked 1 x 1 x 2 x 2 case,
    then random shapes against the dense einsum."""
    m = tf.constant([[[1.0, 2.0], [0.0, -1.0]]])           # [1, K=2, E=2]
    f = tf.constant([[[[3.0, 1.0], [0.0, 2.0]]]])          # [1, 1, 2, C=2]
    kernel = tf.constant([[[[1.0, 0.0], [2.0, 1.0]]]])     # [1, 1, C, E]
    bias = tf.constant([0.5, -1.0])
    # Pixel (0, 0): W f = [3 + 2, 1] = [5, 1] + b = [5.5, 0]; pixel (0, 1):
    # [0 + 4, 2] + b = [4.5, 1]. Slot 0 (1, 2): 5.5, 6.5; slot 1 (0, -1):
    # 0, -1.
    got = MaskEmbeddingGenerator.logits_through_linear(m, f, kernel, bias)
    np.testing.assert_allclose(got.numpy(), [[[[5.5, 0.0], [6.5, -1.0]]]])
    rng = np.random.RandomState(1)
    m = tf.constant(rng.randn(B, K, E), tf.float32)
    f = tf.constant(rng.randn(B, H, W, 5), tf.float32)
    kernel = tf.constant(rng.randn(1, 1, 5, E), tf.float32)
    bias = tf.constant(rng.randn(E), tf.float32)
    pixels = np.einsum('bhwc,ce->bhwe', f.numpy(), kernel.numpy()[0, 0])
    want = np.einsum('bke,bhwe->bhwk', m.numpy(), pixels + bias.numpy())
    got = MaskEmbeddingGenerator.logits_through_linear(m, f, kernel, bias)
    assert got.shape == (B, H, W, K) and got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)
