"""Golden and unit tests of the MaskConver training targets."""

import math

import numpy as np
import pytest
import tensorflow as tf

from maskconver_tf.ops import target_ops

# Channels of the golden scene: 0 void, 1 and 2 things, 3 and 4 stuff.
IS_THING = [False, True, True, False, False]
NUM_CLASSES = 5


def reference_sigma(h, w, iou):
    """The reference Gaussian sigma, written out in numpy."""
    def root(a, b, c):
        return (-b + math.sqrt(b * b - 4 * a * c)) / 2  # "/ 2", not "/ 2a"
    r = min(root(1, -(h + w), w * h * (1 - iou) / (1 + iou)),
            root(4, -2 * (h + w), (1 - iou) * w * h),
            root(4 * iou, 2 * iou * (h + w), (iou - 1) * w * h))
    return (2 * max(math.floor(r), 0) + 1) / 6


def golden_scene():
    """64x64 channel and instance maps of a scene with things and stuff.

    - instance 3, channel 1: square rows 12..17, cols 50..55;
    - instance 2, channel 1: ring 6 <= |p - (30, 30)| <= 10 (box 20..40);
    - instance 1, channel 2: disc |p - (30, 30)| <= 4 (box 26..34), inside the
      ring: the same box center, another class;
    - channel 3 (stuff): rows 0..9, all columns;
    - channel 4 (stuff): blob A rows 50..63 x cols 0..19, blob B rows 50..63 x
      cols 24..39 (4 px gap: merged by a 5x5 dilation), blob C rows 50..55 x
      cols 56..61 (36 px, its own component).
    """
    y, x = np.mgrid[:64, :64]
    d2 = (y - 30) ** 2 + (x - 30) ** 2
    category = np.zeros([64, 64], np.int32)
    instance = np.zeros([64, 64], np.int32)
    category[:10] = 3
    category[50:, :20] = 4
    category[50:, 24:40] = 4
    category[50:56, 56:62] = 4
    ring = (d2 >= 36) & (d2 <= 100)
    disc = d2 <= 16
    category[ring], instance[ring] = 1, 2
    category[disc], instance[disc] = 2, 1
    category[12:18, 50:56], instance[12:18, 50:56] = 1, 3
    return category, instance, ring, disc


def build(category, instance, **kwargs):
    args = dict(is_thing_channel=IS_THING, num_classes=NUM_CLASSES, level=3,
                num_instances=6, gaussian_iou=0.7, max_num_stuff_centers=1,
                min_stuff_area=100, stuff_dilation=5)
    args.update(kwargs)
    out = target_ops.build_targets(tf.constant(category), tf.constant(instance),
                                   **args)
    return {k: v.numpy() for k, v in out.items()}


@pytest.mark.parametrize('h,w', [(1.0, 1.0), (1.125, 7.875), (2.5, 2.5),
                                 (10.0, 4.0), (30.0, 50.0), (0.0, 0.0)])
def test_gaussian_sigma_matches_reference_formula(h, w):
    sigma = target_ops.gaussian_sigma(tf.constant([h]), tf.constant([w]), 0.7)
    np.testing.assert_allclose(sigma.numpy()[0], reference_sigma(h, w, 0.7),
                               rtol=1e-6)


def test_gaussian_sigma_known_values():
    # 30x50 box: r = min(76.5, 147.8, 10.3) -> floor 10 -> 21 / 6.
    sigma = target_ops.gaussian_sigma(tf.constant([30.0, 1.0]),
                                      tf.constant([50.0, 1.0]), 0.7).numpy()
    np.testing.assert_allclose(sigma, [21 / 6, 1 / 6], rtol=1e-6)


def test_golden_scene():
    category, instance, ring, disc = golden_scene()
    t = build(category, instance)

    # Slots: things in raster order of first appearance, then stuff.
    np.testing.assert_array_equal(t['classes'], [1, 1, 2, 3, 4, -1])
    # Box centers / 8, floored: square (14.5, 52.5), ring and disc (30, 30),
    # sky (4.5, 31.5), ground A+B (56.5, 19.5).
    np.testing.assert_array_equal(
        t['center_indices'], [[1, 6], [3, 3], [3, 3], [0, 3], [7, 2], [0, 0]])
    np.testing.assert_array_equal(t['mask_weights'], [1, 1, 1, 1, 1, 0])
    assert t['num_instances'] == 5
    assert t['num_dropped_segments'] == 0

    # Peaks: exactly 1.0 at the center cells, the collision in two channels.
    heat = t['heatmaps']
    assert heat.shape == (8, 8, 5)
    peaks = sorted(map(tuple, np.argwhere(heat == 1.0)))
    assert peaks == [(0, 3, 3), (1, 6, 1), (3, 3, 1), (3, 3, 2), (7, 2, 4)]
    assert heat[..., 0].max() == 0.0
    # Off-peak value of the sky Gaussian: box (0, 0, 9, 63) / 8.
    sigma = reference_sigma(9 / 8, 63 / 8, 0.7)
    np.testing.assert_allclose(heat[0, 4, 3], math.exp(-1 / (2 * sigma ** 2)),
                               rtol=1e-5)

    masks = t['masks']
    assert masks.shape == (64, 64, 6)
    square = np.zeros([64, 64], bool)
    square[12:18, 50:56] = True
    np.testing.assert_array_equal(masks[..., 0], square)
    np.testing.assert_array_equal(masks[..., 1], ring)
    np.testing.assert_array_equal(masks[..., 2], disc)
    np.testing.assert_array_equal(masks[..., 3], category == 3)
    # The stuff target is the whole class mask, blob C included.
    np.testing.assert_array_equal(masks[..., 4], category == 4)
    assert masks[50, 58, 4] == 1.0
    np.testing.assert_array_equal(masks[..., 5], -1.0)


def test_golden_scene_k_overflow_keeps_peaks_and_counts():
    category, instance, _, _ = golden_scene()
    t = build(category, instance, num_instances=3)
    np.testing.assert_array_equal(t['classes'], [1, 1, 2])
    assert t['num_instances'] == 3
    assert t['num_dropped_segments'] == 2
    # The dropped stuff segments keep their heatmap peaks.
    assert t['heatmaps'][0, 3, 3] == 1.0 and t['heatmaps'][7, 2, 4] == 1.0
    assert t['masks'].shape == (64, 64, 3)


def test_mask_target_stride_samples_label_maps():
    category, instance, _, _ = golden_scene()
    full = build(category, instance)['masks']
    t = build(category, instance, mask_target_stride=2)
    assert t['masks'].shape == (32, 32, 6)
    np.testing.assert_array_equal(t['masks'], full[1::2, 1::2])


def test_stuff_min_area_and_max_count():
    category, _, _, _ = golden_scene()
    is_stuff = tf.constant([False, False, False, True, True])

    def stuff(max_count, min_area, dilation=5):
        classes, boxes, _ = target_ops.stuff_segments(
            tf.constant(category), is_stuff, max_count, min_area, dilation)
        return classes.numpy().tolist(), boxes.numpy().tolist()

    # Two components per class allowed: blob C (36 px) passes area 30 only.
    assert stuff(2, 30) == ([3, 4, 4], [[0, 0, 9, 63], [50, 0, 63, 39],
                                        [50, 56, 55, 61]])
    assert stuff(2, 100) == ([3, 4], [[0, 0, 9, 63], [50, 0, 63, 39]])
    # A 3x3 dilation does not bridge the 4 px gap: A (280 px) and B (224 px)
    # are separate; with one center per class only A is kept.
    assert stuff(1, 100, dilation=3) == ([3, 4], [[0, 0, 9, 63],
                                                  [50, 0, 63, 19]])
    assert stuff(3, 100, dilation=3) == ([3, 4, 4], [[0, 0, 9, 63],
                                                     [50, 0, 63, 19],
                                                     [50, 24, 63, 39]])
    # The area rule applies to the kept components: sky (640 px) passes 300,
    # ground blob A (280 px) does not; nothing passes 641.
    assert stuff(1, 300, dilation=3) == ([3], [[0, 0, 9, 63]])
    assert stuff(1, 641) == ([], [])


def test_stuff_dilation_61_merges_far_blobs():
    category = np.zeros([128, 128], np.int32)
    category[10:50, 10:50] = 3
    category[10:50, 100:120] = 3  # 50 px gap: merged by 61x61 (+-30 each)
    classes, boxes, _ = target_ops.stuff_segments(
        tf.constant(category), tf.constant([False, False, False, True]),
        1, 1024, 61)
    assert classes.numpy().tolist() == [3]
    assert boxes.numpy().tolist() == [[10, 10, 49, 119]]


def test_thing_class_is_majority_and_void_majority_is_skipped():
    category = np.zeros([16, 16], np.int32)
    instance = np.zeros([16, 16], np.int32)
    instance[0:4, 0:4] = 7
    category[0:4, 0:4] = 2
    category[0, 0:3] = 1  # 3 of 16 pixels disagree
    instance[8:12, 8:12] = 9  # all void
    category[-1, -1] = -1  # padding
    ids, classes, boxes, centroids = target_ops.thing_segments(
        tf.constant(category), tf.constant(instance), 3)
    assert ids.numpy().tolist() == [7]
    assert classes.numpy().tolist() == [2]
    assert boxes.numpy().tolist() == [[0, 0, 3, 3]]
    np.testing.assert_allclose(centroids, [[1.5, 1.5]])


def test_draw_heatmaps_merges_by_max():
    heat = target_ops.draw_heatmaps(
        tf.constant([[2.9, 2.2], [2.0, 4.0]]), tf.constant([[30.0, 50.0]] * 2),
        tf.constant([1, 1]), 8, 8, 2, 0.7).numpy()
    sigma = 21 / 6
    yy, xx = np.mgrid[:8, :8]
    expected = np.maximum(np.exp(-((yy - 2) ** 2 + (xx - 2) ** 2) / (2 * sigma ** 2)),
                          np.exp(-((yy - 2) ** 2 + (xx - 4) ** 2) / (2 * sigma ** 2)))
    np.testing.assert_allclose(heat[..., 1], expected, rtol=1e-5)
    np.testing.assert_array_equal(heat[..., 0], 0.0)


def test_build_targets_without_segments():
    t = build(np.zeros([16, 16], np.int32), np.zeros([16, 16], np.int32),
              num_instances=2)
    np.testing.assert_array_equal(t['heatmaps'], 0.0)
    np.testing.assert_array_equal(t['classes'], [-1, -1])
    np.testing.assert_array_equal(t['masks'], -1.0)
    assert t['num_instances'] == 0 and t['num_dropped_segments'] == 0


def test_centroid_centers():
    category = np.zeros([16, 16], np.int32)
    instance = np.zeros([16, 16], np.int32)
    # L-shaped thing: rows 0..15 x cols 0..1 (32 px) + rows 14..15 x 2..15.
    category[:, 0:2] = category[14:, 2:] = 1
    instance[category == 1] = 1
    # L-shaped stuff: rows 0..1 x cols 4..15 (24 px) + rows 2..9 x 14..15.
    category[0:2, 4:] = category[2:10, 14:] = 3
    kwargs = dict(num_instances=2, min_stuff_area=1, level=2)
    box = build(category, instance, **kwargs)
    cen = build(category, instance, center_type='centroid', **kwargs)
    # Boxes (0, 0, 15, 15) and (0, 4, 9, 15): centers (7.5, 7.5) and
    # (4.5, 9.5), / 4 -> cells (1, 1) and (1, 2).
    np.testing.assert_array_equal(box['center_indices'], [[1, 1], [1, 2]])
    # Centroids: ((32 * 7.5 + 28 * 14.5) / 60, (32 * 0.5 + 28 * 8.5) / 60)
    # = (10.77, 4.23) and ((24 * 0.5 + 16 * 5.5) / 40, (24 * 9.5 + 16 * 14.5)
    # / 40) = (2.5, 11.5); / 4 -> cells (2, 1) and (0, 2).
    np.testing.assert_array_equal(cen['center_indices'], [[2, 1], [0, 2]])
    assert cen['heatmaps'][2, 1, 1] == 1.0 and cen['heatmaps'][0, 2, 3] == 1.0
    # The Gaussian size still comes from the box.
    sigma = reference_sigma(15 / 4, 15 / 4, 0.7)
    np.testing.assert_allclose([cen['heatmaps'][2, 2, 1], box['heatmaps'][1, 2, 1]],
                               math.exp(-1 / (2 * sigma ** 2)), rtol=1e-6)


@pytest.mark.parametrize('size', [1, 3, 5, 21, 61])
def test_dilate_equals_max_pool(size):
    masks = np.random.RandomState(size).rand(2, 70, 90) > 0.995
    expected = tf.nn.max_pool2d(masks[..., None].astype(np.float32), size, 1,
                                'SAME')[..., 0].numpy() > 0
    np.testing.assert_array_equal(target_ops.dilate(tf.constant(masks), size),
                                  expected)
