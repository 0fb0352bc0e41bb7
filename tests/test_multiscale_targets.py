"""Multi-scale targets on a hand-computed 64 x 64 scene.

Levels 3..5 (grids 8x8, 4x4, 2x2; flat offsets 0, 64, 80; N = 84), ranges
[0, 10] [10, 20] [20, 1e6] on the box half-diagonal 0.5 sqrt(h^2 + w^2)
(h = ymax - ymin, w = xmax - xmin, input pixels). Channels: 0 void, 1 and 2
things, 3 stuff.

Scene (rows, cols inclusive):
- A: instance 1, class 1, rows 2..5, cols 10..17. Box h 3, w 7 -> half
  diagonal 3.81 -> level 3. Centroid (3.5, 13.5) -> cell (0, 1) -> flat 1.
- B: instance 2, class 2, L shape rows 20..39 x cols 20..27 (160 px) plus
  rows 32..39 x cols 28..43 (128 px). Box (20, 20, 39, 43): h 19, w 23 ->
  14.92 -> level 4. Centroid y = (160 * 29.5 + 128 * 35.5) / 288 = 32.1667,
  x = (160 * 23.5 + 128 * 35.5) / 288 = 28.8333 -> stride 16 cell (2, 1)
  -> flat 64 + 2 * 4 + 1 = 73 (the box center (29.5, 31.5) would give
  cell (1, 1) -> 69).
- C: instance 3, class 1, rows 44..56, cols 2..18. h 12, w 16 -> exactly 10:
  on the boundary, so on levels 3 and 4. Centroid (50, 10): level 3 cell
  (6, 1) -> 49; level 4 cell (3, 0) -> 64 + 12 = 76.
- stuff 3: rows 0..63 x cols 48..63 (1024 px) plus rows 56..63 x cols
  24..39 (128 px). Class box (0, 24, 63, 63): h 63, w 39 -> 37.05 -> level
  5. Class centroid y = (1024 * 31.5 + 128 * 59.5) / 1152 = 34.6111,
  x = (1024 * 55.5 + 128 * 31.5) / 1152 = 52.8333 -> stride 32 cell (1, 1)
  -> 80 + 2 + 1 = 83.
Slots: A(L3), B(L4), C(L3), C(L4), stuff(L5).
"""

import numpy as np
import pytest
import tensorflow as tf

from maskconver_tf.ops import multiscale_targets as mst
from maskconver_tf.tasks import multiscale_maskconver as ms_task

IS_THING = [False, True, True, False]
KW = dict(is_thing_channel=IS_THING, num_classes=4, min_level=3, max_level=5,
          fpn_low_range=[0, 10, 20], fpn_high_range=[10, 20, 1e6],
          gaussian_iou=0.7)


def _scene():
    category = np.zeros([64, 64], np.int32)
    instance = np.zeros([64, 64], np.int32)
    category[2:6, 10:18], instance[2:6, 10:18] = 1, 1
    category[20:40, 20:28], instance[20:40, 20:28] = 2, 2
    category[32:40, 28:44], instance[32:40, 28:44] = 2, 2
    category[44:57, 2:19], instance[44:57, 2:19] = 1, 3
    category[:, 48:64] = 3
    category[56:64, 24:40] = 3
    return category, instance


def _targets(**kwargs):
    category, instance = _scene()
    out = mst.build_multiscale_targets(tf.constant(category),
                                       tf.constant(instance),
                                       **dict(KW, **kwargs))
    return {k: v.numpy() for k, v in out.items()}


def test_level_geometry():
    assert mst.num_cells(64, 64, 3, 5) == 84
    assert mst.level_offsets(64, 64, 3, 5) == [0, 64, 80]
    assert mst.num_cells(1280, 1280, 3, 7) == 160 ** 2 + 80 ** 2 + 40 ** 2 + \
        20 ** 2 + 10 ** 2


def test_golden_scene():
    t = _targets(num_instances=6)
    np.testing.assert_array_equal(t['classes'], [1, 2, 1, 1, 3, -1])
    np.testing.assert_array_equal(t['center_levels'], [3, 4, 3, 4, 5, -1])
    np.testing.assert_array_equal(t['center_indices'], [1, 73, 49, 76, 83, 0])
    np.testing.assert_array_equal(t['mask_weights'], [1, 1, 1, 1, 1, 0])
    assert t['num_instances'] == 5 and t['num_dropped_segments'] == 0
    heat = t['heatmaps']
    assert heat.shape == (84, 4)
    # A peak of exactly 1 at each slot's cell in its class channel ...
    for index, cls in [(1, 1), (73, 2), (49, 1), (76, 1), (83, 3)]:
        assert heat[index, cls] == 1.0
    # ... and nowhere else; void never has a target.
    assert (heat == 1.0).sum() == 5
    assert heat[:, 0].max() == 0.0
    # Nothing on a level without centers of that class.
    assert heat[80:, 1].max() == 0.0 and heat[:80, 3].max() == 0.0
    assert heat[:64, 2].max() == 0.0
    # Masks (stride 1): each slot's segment; C's two slots share one mask;
    # stuff = the whole class mask; padding slot -1.
    category, instance = _scene()
    masks = t['masks']
    assert masks.shape == (64, 64, 6)
    np.testing.assert_array_equal(masks[..., 0], instance == 1)
    np.testing.assert_array_equal(masks[..., 1], instance == 2)
    np.testing.assert_array_equal(masks[..., 2], instance == 3)
    np.testing.assert_array_equal(masks[..., 3], instance == 3)
    np.testing.assert_array_equal(masks[..., 4], category == 3)
    assert masks[..., 4].sum() == 1152
    assert np.all(masks[..., 5] == -1)


def test_box_centers_differ_for_the_l_shape():
    t = _targets(num_instances=6, center_type='box')
    # B's box center (29.5, 31.5) -> level 4 cell (1, 1); stuff box center
    # (31.5, 43.5) -> level 5 cell (0, 1).
    np.testing.assert_array_equal(t['center_indices'], [1, 69, 49, 76, 81, 0])


def test_overflow_keeps_peaks_drops_slots():
    t = _targets(num_instances=3, mask_target_stride=2)
    np.testing.assert_array_equal(t['classes'], [1, 2, 1])
    np.testing.assert_array_equal(t['center_indices'], [1, 73, 49])
    assert t['num_instances'] == 3 and t['num_dropped_segments'] == 2
    assert (t['heatmaps'] == 1.0).sum() == 5  # dropped slots keep peaks
    _, instance = _scene()
    assert t['masks'].shape == (32, 32, 3)
    np.testing.assert_array_equal(t['masks'][..., 0], instance[1::2, 1::2] == 1)


def test_stuff_components_policy():
    t = _targets(num_instances=8, stuff_centers='components',
                 max_num_stuff_centers=2, min_stuff_area=16, stuff_dilation=3)
    # Strip (1024 px, box h 63 w 15 -> 32.38 -> L5, centroid (31.5, 55.5)
    # -> cell (0, 1) -> 81) then patch (128 px, box h 7 w 15 -> 8.28 -> L3,
    # centroid (59.5, 31.5) -> cell (7, 3) -> 59); both masks = class mask.
    np.testing.assert_array_equal(t['classes'][:6], [1, 2, 1, 1, 3, 3])
    np.testing.assert_array_equal(t['center_levels'][:6], [3, 4, 3, 4, 5, 3])
    np.testing.assert_array_equal(t['center_indices'][:6],
                                  [1, 73, 49, 76, 81, 59])
    category, _ = _scene()
    np.testing.assert_array_equal(t['masks'][..., 5], category == 3)


def test_padding_and_empty_image():
    category = -np.ones([64, 64], np.int32)
    category[:32] = 0
    out = mst.build_multiscale_targets(
        tf.constant(category), tf.zeros([64, 64], tf.int32),
        num_instances=4, **{k: v for k, v in KW.items()})
    assert int(out['num_instances']) == 0
    assert float(tf.reduce_max(out['heatmaps'])) == 0.0
    np.testing.assert_array_equal(out['classes'].numpy(), [-1] * 4)
    weights = mst.flatten_level_weights(
        tf.cast(category < 0, tf.float32)[tf.newaxis], 3, 5).numpy()[0]
    # Top half valid: rows 0..3 of 8, 0..1 of 4, row 0 of 2.
    assert weights.shape == (84,)
    assert weights[:64].sum() == 32 and weights[64:80].sum() == 8
    assert weights[80:].sum() == 2


def test_multiscale_center_loss_normalisation():
    """sum over images of the focal sums / (total slots + 1)."""
    logits = tf.random.stateless_normal([2, 84, 4], seed=[0, 1])
    t = _targets(num_instances=6)
    targets = tf.stack([t['heatmaps'], np.zeros_like(t['heatmaps'])])
    loss = ms_task.multiscale_center_loss(
        logits, targets, tf.constant([5, 0]), tf.zeros([2, 64, 64]), 3, 5)
    p = np.clip(tf.sigmoid(logits).numpy(), 1e-4, 1 - 1e-4)
    y = targets.numpy()
    per_cell = np.where(y == 1.0, -(1 - p) ** 2 * np.log(p),
                        -(1 - y) ** 4 * p ** 2 * np.log(1 - p))
    np.testing.assert_allclose(float(loss), per_cell.sum() / 6.0, rtol=1e-5)


def test_bad_ranges_raise():
    category, instance = _scene()
    with pytest.raises(ValueError, match='one entry per level'):
        mst.build_multiscale_targets(
            tf.constant(category), tf.constant(instance),
            **dict(KW, fpn_low_range=[0, 10]))
    with pytest.raises(ValueError, match='stuff_centers'):
        mst.build_multiscale_targets(
            tf.constant(category), tf.constant(instance),
            **dict(KW, stuff_centers='pixels'))
