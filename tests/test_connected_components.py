"""Connected-component labelling against scipy.ndimage.label."""

import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from maskconver_tf.ops import connected_components as cc


def same_partition(labels, expected):
    """True if two label maps are equal up to renaming of the components."""
    labels, expected = np.asarray(labels), np.asarray(expected)
    if not np.array_equal(labels > 0, expected > 0):
        return False
    pairs = set(zip(labels[labels > 0].tolist(), expected[expected > 0].tolist()))
    return (len(pairs) == len(np.unique(labels[labels > 0]))
            == len(np.unique(expected[expected > 0])))


@pytest.mark.parametrize('density,seed', [(0.3, 0), (0.5, 1), (0.6, 2),
                                          (0.8, 3)])
def test_matches_scipy_on_random_masks(density, seed):
    mask = np.random.RandomState(seed).rand(37, 53) < density
    expected, num = scipy.ndimage.label(mask)
    labels = cc.connected_components(tf.constant(mask)).numpy()
    assert same_partition(labels, expected)
    # Consecutive ids 1..N.
    assert sorted(np.unique(labels[labels > 0]).tolist()) == list(range(1, num + 1))


def test_batch_is_labelled_per_image():
    rng = np.random.RandomState(4)
    masks = rng.rand(3, 24, 20) < 0.55
    masks[2] = False
    labels = cc.connected_components(tf.constant(masks)).numpy()
    for mask, label in zip(masks, labels):
        assert same_partition(label, scipy.ndimage.label(mask)[0])
    np.testing.assert_array_equal(labels[2], 0)


def test_root_labels_are_last_pixel_flat_index():
    mask = np.zeros([4, 5], bool)
    mask[0, 0:2] = mask[1, 1] = True  # last pixel (1, 1) -> 1 * 5 + 1 + 1
    mask[3, 2:5] = True  # last pixel (3, 4) -> 20
    expected = np.zeros([4, 5], np.int32)
    expected[0, 0:2] = expected[1, 1] = 7
    expected[3, 2:5] = 20
    np.testing.assert_array_equal(cc.label_components(tf.constant(mask)),
                                  expected)


def test_snake_and_diagonal_connectivity():
    # A one-pixel-wide serpentine path is one component (long geodesics).
    snake = np.zeros([21, 21], bool)
    snake[::2] = True
    for i, row in enumerate(range(1, 21, 2)):
        snake[row, 20 if i % 2 == 0 else 0] = True
    assert cc.connected_components(tf.constant(snake)).numpy().max() == 1
    # Diagonal neighbours are not connected (4-connectivity).
    diagonal = np.eye(5, dtype=bool)
    assert cc.connected_components(tf.constant(diagonal)).numpy().max() == 5


def test_static_shape_in_graph():
    fn = tf.function(cc.connected_components,
                     input_signature=[tf.TensorSpec([2, 16, 16], tf.bool)])
    out = fn.get_concrete_function().structured_outputs
    assert out.shape.as_list() == [2, 16, 16]
