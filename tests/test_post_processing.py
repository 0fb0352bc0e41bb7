"""Tests for proposal extraction and the panoptic merge (tiny hand-built maps).

Scores are written as probabilities and turned into logits with `_logit`, so
every expected value below can be checked by hand. Channel conventions of the
merge tests: channel 0 void, 1 -> id 7 (thing), 2 -> id 23 (thing),
3 -> id 150 (stuff): non-contiguous dataset ids.
"""

import numpy as np
import pytest
import tensorflow as tf

from maskconver_tf._compat import check_tf_keras
from maskconver_tf.modeling.layers import post_processing as pp

tf_keras = check_tf_keras()

IS_THING = [False, True, True, False]
CHANNEL_TO_ID = [0, 7, 23, 150]
# sigmoid(-1e4) is exactly 0 in float32: background that is never a peak.
BACKGROUND = -1e4


def _logit(p):
    p = np.asarray(p, np.float64)
    return np.log(p / (1.0 - p)).astype(np.float32)


def _heatmap(h, w, c, peaks):
    """float32 [1, h, w, c] logits; peaks: {(y, x, channel): probability}."""
    heatmap = np.full([1, h, w, c], BACKGROUND, np.float32)
    for (y, x, ch), p in peaks.items():
        heatmap[0, y, x, ch] = _logit(p)
    return heatmap


def _masks(*rows_per_proposal):
    """float32 [1, h, w, K] logits from K probability maps of [h, w]."""
    return _logit(np.stack(rows_per_proposal, axis=-1)[np.newaxis])


def _merge(probs, classes, scores, **kwargs):
    logits = _masks(*probs)
    h, w = logits.shape[1:3]
    out = pp.panoptic_merge(
        tf.constant(logits), tf.constant([classes], tf.int32),
        tf.constant([scores], tf.float32), IS_THING, CHANNEL_TO_ID, (h, w),
        **kwargs)
    return {k: v.numpy()[0] for k, v in out.items()}


# ----------------------------------------------------------------------------
# extract_proposals


def test_decode_on_non_square_grid_and_padding_picks():
    # h=3, w=4, C=3. Flat index of (y, x, c) is (y * 4 + x) * 3 + c, e.g.
    # (2, 1, 1) -> 28 -> cell 9 -> y = 9 // 4 = 2, x = 9 - 8 = 1 (dividing by
    # h instead of w would give y = 3). Three peaks for K = 4: the fourth pick
    # is a non-peak with score 0 and class 0.
    heatmap = _heatmap(3, 4, 3, {(2, 1, 1): 0.9, (1, 0, 2): 0.8,
                                 (0, 3, 2): 0.7})
    out = pp.extract_proposals(tf.constant(heatmap), max_proposals=4)
    np.testing.assert_array_equal(out['classes'], [[1, 2, 2, 0]])
    np.testing.assert_allclose(out['scores'], [[0.9, 0.8, 0.7, 0.0]],
                               atol=1e-6)
    np.testing.assert_array_equal(out['center_indices'][:, :3],
                                  [[[2, 1], [1, 0], [0, 3]]])
    assert out['classes'].dtype == tf.int32
    assert out['center_indices'].dtype == tf.int32
    assert out['scores'].dtype == tf.float32


def test_plateau_and_suppressed_neighbour():
    # Channel 1 of a 4x4 map:      0    0    0    0
    #                              0   .6   .6    0
    #                              0    0   .5    0
    #                             .4    0    0    0
    # Both .6 cells of the plateau equal their 3x3 max -> two peaks, lower
    # flat index first; .5 touches a .6 -> not a peak; .4 at (3, 0) only
    # sees zeros -> a peak although it is lower than the suppressed .5.
    heatmap = _heatmap(4, 4, 2, {(1, 1, 1): 0.6, (1, 2, 1): 0.6,
                                 (2, 2, 1): 0.5, (3, 0, 1): 0.4})
    out = pp.extract_proposals(tf.constant(heatmap), max_proposals=4)
    np.testing.assert_allclose(out['scores'], [[0.6, 0.6, 0.4, 0.0]],
                               atol=1e-6)
    np.testing.assert_array_equal(out['classes'], [[1, 1, 1, 0]])
    np.testing.assert_array_equal(out['center_indices'][:, :3],
                                  [[[1, 1], [1, 2], [3, 0]]])


def test_two_classes_peaking_at_one_cell_are_two_proposals():
    # Cell (y=1, x=2) peaks in channel 2 (.9) and channel 1 (.7): the peak
    # test is per channel, so both become proposals with the same (y, x).
    heatmap = _heatmap(3, 3, 3, {(1, 2, 1): 0.7, (1, 2, 2): 0.9})
    out = pp.extract_proposals(tf.constant(heatmap), max_proposals=2)
    np.testing.assert_array_equal(out['classes'], [[2, 1]])
    np.testing.assert_allclose(out['scores'], [[0.9, 0.7]], atol=1e-6)
    np.testing.assert_array_equal(out['center_indices'], [[[1, 2], [1, 2]]])


def test_void_channel_never_proposed():
    # Channel 0 (void) has the strongest peak (.99 at (0, 0)); it is masked
    # out, so the only proposal is channel 2 at (2, 2), then a score-0 pick.
    heatmap = _heatmap(3, 3, 3, {(0, 0, 0): 0.99, (2, 2, 2): 0.5})
    out = pp.extract_proposals(tf.constant(heatmap), max_proposals=2)
    np.testing.assert_array_equal(out['classes'], [[2, 0]])
    np.testing.assert_allclose(out['scores'], [[0.5, 0.0]], atol=1e-6)
    np.testing.assert_array_equal(out['center_indices'][:, 0], [[2, 2]])


def test_top_k_cells_then_channels_orders_ties_by_flat_index():
    # h=1, w=3, C=2; flat index = cell * 2 + channel.
    #   cell 0: [.5, 0]   cell 1: [.9, .5]   cell 2: [.2, .5]
    # Cells by max: 1 (.9), then 0 and 2 (.5, lower index first). The three
    # .5s come in flat order 0, 3, 5: cell 0's before cell 1's although
    # cell 1 ranks first in stage 1.
    values = tf.constant([[[[.5, 0.], [.9, .5], [.2, .5]]]], tf.float32)
    top, index = pp.top_k_cells_then_channels(values, 2)
    np.testing.assert_allclose(top, [[.9, .5]])
    np.testing.assert_array_equal(index, [[2, 0]])
    top, index = pp.top_k_cells_then_channels(values, 4)  # k >= h * w: flat
    np.testing.assert_allclose(top, [[.9, .5, .5, .5]])
    np.testing.assert_array_equal(index, [[2, 0, 3, 5]])


@pytest.mark.parametrize('k', [1, 3, 7, 15, 16, 40])
def test_top_k_cells_then_channels_equals_flat_top_k(k):
    # Four levels over 2 x 4 x 4 x 6 values: ties everywhere, zeros included.
    rng = np.random.RandomState(k)
    values = tf.constant(rng.randint(0, 4, [2, 4, 4, 6]) / 4.0, tf.float32)
    want = tf.math.top_k(tf.reshape(values, [2, -1]), k=k)
    top, index = pp.top_k_cells_then_channels(values, k)
    np.testing.assert_array_equal(top, want.values)
    np.testing.assert_array_equal(index, want.indices)


def test_slot_areas_counts_won_pixels_without_the_sentinel():
    # k = 3 slots; 3 is the void sentinel. Image 0 wins: slot 0 x3, slot 2
    # x2, sentinel x1; image 1: slot 1 x4, slot 0 x1, sentinel x1.
    winner = tf.constant([[[0, 0, 2], [3, 2, 0]],
                          [[1, 1, 3], [1, 0, 1]]], tf.int32)
    areas = pp.slot_areas(winner, 3)
    assert areas.dtype == tf.float32
    np.testing.assert_array_equal(areas, [[3, 0, 2], [1, 4, 0]])


def test_too_many_proposals_rejected():
    with pytest.raises(ValueError, match='max_proposals'):
        pp.extract_proposals(tf.zeros([1, 2, 2, 2]), max_proposals=9)


# ----------------------------------------------------------------------------
# panoptic_merge: 2x4 canvases equal to the logit grid (no resize); rows of a
# proposal's probability map are written once when both rows are equal.

# q0: thing id 7, score .5; q1: thing id 23, score .9; q2: stuff id 150, .8.
ARGMAX_PROBS = ([[.9, .9, .1, .1]] * 2,
                [[.1, .6, .6, .6]] * 2,
                [[.1, .1, .2, .9]] * 2)
ARGMAX_CLASSES = [1, 2, 3]
ARGMAX_SCORES = [0.5, 0.9, 0.8]


def test_argmax_of_mask_times_score_things_and_ids():
    # prob x score per column: col 0: q0 .45 > q1 .09 > q2 .08 -> q0;
    # col 1: q1 .54 beats q0 .45 although q0's mask prob .9 > .6 -> q1;
    # col 2: q1 .54 > q2 .16 -> q1; col 3: q2 .72 > q1 .54 -> q2.
    # Without area filters all are kept: ids via channel_to_id, things get
    # slot + 1 (q0 -> 1, q1 -> 2), stuff q2 -> 0.
    out = _merge(ARGMAX_PROBS, ARGMAX_CLASSES, ARGMAX_SCORES,
                 overlap_threshold=0.0)
    np.testing.assert_array_equal(out['category_mask'],
                                  [[7, 23, 23, 150]] * 2)
    np.testing.assert_array_equal(out['instance_mask'], [[1, 2, 2, 0]] * 2)
    np.testing.assert_array_equal(out['classes'], [7, 23, 150])
    np.testing.assert_allclose(out['scores'], [0.5, 0.9, 0.8])
    assert out['category_mask'].dtype == np.int32
    assert out['instance_mask'].dtype == np.int32


def test_overlap_filter_turns_pixels_void():
    # Same maps, overlap_threshold .5. q0: prob > .5 on cols 0-1 (4 px) but
    # wins only col 0 (2 px); 2 > .5 * 4 fails -> rejected, col 0 void.
    # q1: 4 won of 6 -> kept; q2: 2 of 2 -> kept.
    out = _merge(ARGMAX_PROBS, ARGMAX_CLASSES, ARGMAX_SCORES,
                 overlap_threshold=0.5)
    np.testing.assert_array_equal(out['category_mask'],
                                  [[0, 23, 23, 150]] * 2)
    np.testing.assert_array_equal(out['instance_mask'], [[0, 2, 2, 0]] * 2)
    np.testing.assert_array_equal(out['classes'], [0, 23, 150])
    np.testing.assert_allclose(out['scores'], [0.0, 0.9, 0.8])


# q0: thing id 7, score .9, confident on cols 0-1 only; q1: stuff id 150,
# score .009, confident everywhere.
THRESHOLD_PROBS = ([[.9, .9, .001, .001]] * 2, [[.99] * 4] * 2)


def test_object_mask_threshold_rejects_proposal():
    # q1's score .009 is below .01 -> invalid. On cols 2-3 it would win
    # (.99 * .009 = .0089 > .001 * .9); without it q0 wins every pixel (the
    # reference has no void competitor) and is kept (8 won > .7 * 4).
    out = _merge(THRESHOLD_PROBS, [1, 3], [0.9, 0.009])
    np.testing.assert_array_equal(out['category_mask'], [[7, 7, 7, 7]] * 2)
    np.testing.assert_array_equal(out['classes'], [7, 0])
    np.testing.assert_allclose(out['scores'], [0.9, 0.0])
    # Lowering the threshold makes q1 valid: it takes cols 2-3, 4 of its 8
    # confident px, so it needs overlap_threshold < .5 to be kept.
    out = _merge(THRESHOLD_PROBS, [1, 3], [0.9, 0.009],
                 object_mask_threshold=0.005, overlap_threshold=0.4)
    np.testing.assert_array_equal(out['category_mask'],
                                  [[7, 7, 150, 150]] * 2)


def test_void_prob_threshold():
    # Opt-in void rule: cols 2-3 have best valid prob .001 < .5 -> void
    # instead of going to q0; q0 wins 4 of its 4 confident pixels -> kept.
    out = _merge(THRESHOLD_PROBS, [1, 3], [0.9, 0.009],
                 void_prob_threshold=0.5)
    np.testing.assert_array_equal(out['category_mask'], [[7, 7, 0, 0]] * 2)
    np.testing.assert_array_equal(out['instance_mask'], [[1, 1, 0, 0]] * 2)


# One thing read as two classes: q0 (id 7, .6) and q1 (id 23, .55) both
# confident on cols 0-2 (q0 .9 / .6 / .9, q1 .6 / .9 / .6); q2 (stuff 150,
# .8) owns col 3.
DUPLICATE_PROBS = ([[.9, .6, .9, .1]] * 2, [[.6, .9, .6, .1]] * 2,
                   [[.1, .1, .1, .9]] * 2)


def test_duplicates_split_an_object_into_void_unless_suppressed():
    # The reference merge: q0 wins cols 0 and 2 (.54 > .33), q1 col 1
    # (.495 > .36): 4 and 2 of their 6 confident px, both fail .7 -> void.
    out = _merge(DUPLICATE_PROBS, [1, 2, 3], [0.6, 0.55, 0.8])
    np.testing.assert_array_equal(out['category_mask'],
                                  [[0, 0, 0, 150]] * 2)
    # IoU(q0, q1) = 6 / 6 = 1 > .5: q1 repeats the better q0 and is dropped,
    # q0 takes all its 6 px; q2 (IoU 0 with both) stays.
    out = _merge(DUPLICATE_PROBS, [1, 2, 3], [0.6, 0.55, 0.8],
                 duplicate_iou_threshold=0.5)
    np.testing.assert_array_equal(out['category_mask'],
                                  [[7, 7, 7, 150]] * 2)
    np.testing.assert_array_equal(out['instance_mask'], [[1, 1, 1, 0]] * 2)
    np.testing.assert_array_equal(out['classes'], [7, 0, 150])


def test_duplicate_proposals_by_score_not_slot_and_only_valid_suppress():
    # Masks (logit > 0) on 1 x 4: q0 cols 0-1, q1 cols 0-2, q2 col 3,
    # q3 cols 0-1. IoU: q0-q1 2/3, q0-q3 1, q1-q3 2/3, q2 disjoint.
    masks = _masks([[.9, .9, .1, .1]], [[.9, .9, .9, .1]],
                   [[.1, .1, .1, .9]], [[.9, .9, .1, .1]])

    def dups(scores, valid, threshold):
        return pp.duplicate_proposals(
            tf.constant(masks), tf.constant([scores], tf.float32),
            tf.constant([valid]), threshold).numpy()[0].tolist()

    # q1 scores highest: it suppresses q0 and q3 at .6 (2/3 > .6), and q0
    # suppresses q3 (IoU 1).
    assert dups([.5, .9, .3, .4], [True] * 4, 0.6) == [True, False, False,
                                                       True]
    # At .7 only the IoU-1 pair is a duplicate: q3 (lower score).
    assert dups([.5, .9, .3, .4], [True] * 4, 0.7) == [False, False, False,
                                                       True]
    # Equal scores: the lower slot wins.
    assert dups([.5, .9, .3, .5], [True] * 4, 0.7) == [False, False, False,
                                                       True]
    # An invalid proposal suppresses nothing.
    assert dups([.5, .9, .3, .4], [False, True, True, True], 0.7) == [
        False, False, False, False]


def test_small_area_filter():
    # q0 (id 7, .9) wins cols 0-2 (6 px), q1 (id 23, .8) wins col 3 (2 px).
    probs = ([[.9, .9, .9, .1]] * 2, [[.1, .1, .1, .9]] * 2)
    # small_area_threshold 2: q1 needs > 2 px -> rejected, col 3 void.
    out = _merge(probs, [1, 2], [0.9, 0.8], small_area_threshold=2)
    np.testing.assert_array_equal(out['category_mask'], [[7, 7, 7, 0]] * 2)
    np.testing.assert_array_equal(out['instance_mask'], [[1, 1, 1, 0]] * 2)
    np.testing.assert_array_equal(out['classes'], [7, 0])
    # small_area_threshold 1: q1 kept as instance 2.
    out = _merge(probs, [1, 2], [0.9, 0.8], small_area_threshold=1)
    np.testing.assert_array_equal(out['category_mask'], [[7, 7, 7, 23]] * 2)
    np.testing.assert_array_equal(out['instance_mask'], [[1, 1, 1, 2]] * 2)


def test_stuff_of_one_class_merges():
    # q0 and q1 are both stuff channel 3 (id 150), left and right halves;
    # q2 is a thing (id 23, slot 2) confident only at (1, 3), where it wins
    # (.95 * .95 = .90 > .9 * .8 = .72). q1 keeps 3 of its 4 px (> .7 * 4).
    probs = ([[.9, .9, .1, .1], [.9, .9, .1, .1]],
             [[.1, .1, .9, .9], [.1, .1, .9, .9]],
             [[.01, .01, .01, .01], [.01, .01, .01, .95]])
    out = _merge(probs, [3, 3, 2], [0.9, 0.8, 0.95])
    np.testing.assert_array_equal(out['category_mask'],
                                  [[150, 150, 150, 150], [150, 150, 150, 23]])
    np.testing.assert_array_equal(out['instance_mask'],
                                  [[0, 0, 0, 0], [0, 0, 0, 3]])
    np.testing.assert_array_equal(out['classes'], [150, 150, 23])


def test_unused_channel_is_rejected():
    # Channel 2 mapped to id 0 (an unused channel of a 'raw' descriptor):
    # the proposal is invalid, so q0 takes its pixels.
    out = pp.panoptic_merge(
        tf.constant(_masks([[.9, .9, .1]], [[.1, .1, .9]])),
        tf.constant([[1, 2]]), tf.constant([[0.9, 0.95]]),
        [False, True, True], [0, 7, 0], (1, 3), overlap_threshold=0.0)
    np.testing.assert_array_equal(out['category_mask'], [[[7, 7, 7]]])
    np.testing.assert_array_equal(out['classes'], [[7, 0]])


def test_image_info_maps_back_and_voids_outside_image():
    # Original image 2x4 (y, x), scale 2 -> 4x8, pasted top-left into an 8x8
    # input (rows 4-7 padding). Logit grid 4x4 at stride 2; canvas 4x4 in
    # original pixels. Canvas (Y, X) centre -> input ((Y + .5) * 2, ...) ->
    # grid (Y, X) exactly, so canvas logits equal grid logits; canvas rows
    # 2-3 lie outside the original image and are void.
    # q0 (thing id 7, .9): confident at grid col 0 of rows 0-1 and on the
    # whole padding (rows 2-3). q1 (stuff id 150, .8): rows 0-1, cols 1-3.
    q0 = [[.98, .02, .02, .02]] * 2 + [[.98] * 4] * 2
    q1 = [[.02, .98, .98, .98]] * 2 + [[.02] * 4] * 2
    logits = tf.constant(_masks(q0, q1))
    info = tf.constant([[[2, 4], [8, 8], [2, 2], [0, 0]]], tf.float32)

    def merge(small_area_threshold):
        out = pp.panoptic_merge(
            logits, tf.constant([[1, 3]]), tf.constant([[0.9, 0.8]]),
            IS_THING, CHANNEL_TO_ID, (4, 4),
            small_area_threshold=small_area_threshold, image_info=info)
        return {k: v.numpy()[0] for k, v in out.items()}

    out = merge(1)
    np.testing.assert_array_equal(out['category_mask'],
                                  [[7, 150, 150, 150]] * 2 + [[0] * 4] * 2)
    np.testing.assert_array_equal(out['instance_mask'],
                                  [[1, 0, 0, 0]] * 2 + [[0] * 4] * 2)
    # q0 covers 2 in-image px; the 8 out-of-image px do not count, so with
    # small_area_threshold 2 it is rejected. (The reference would give it
    # those 8 px at probability .5, an area of 10, and keep it.)
    out = merge(2)
    np.testing.assert_array_equal(out['category_mask'],
                                  [[0, 150, 150, 150]] * 2 + [[0] * 4] * 2)
    np.testing.assert_array_equal(out['classes'], [0, 150])


def test_image_info_resize_matches_tf_image_resize():
    # Grid 4x4 covering a 4x4 input; originals 8x8 (image 0) and 6x8
    # (image 1, rows 3.. of the input are padding), both at scale .5. On an
    # 8x8 canvas the mapping is the half-pixel bilinear resize 4 -> 8, so
    # logits equal tf.image.resize; image 1's canvas rows 6-7 are outside.
    logits = tf.constant(
        np.random.RandomState(0).randn(2, 4, 4, 3).astype(np.float32))
    info = tf.constant([[[8, 8], [4, 4], [.5, .5], [0, 0]],
                        [[6, 8], [4, 4], [.5, .5], [0, 0]]], tf.float32)
    resized, in_image = pp._resize_to_original(logits, info, (8, 8), None)
    np.testing.assert_allclose(resized, tf.image.resize(logits, (8, 8)),
                               atol=1e-5)
    expected_in_image = np.ones([2, 8, 8], bool)
    expected_in_image[1, 6:] = False
    np.testing.assert_array_equal(in_image, expected_in_image)


def test_hardware_path():
    # Hard sigmoid relu6(x + 3) / 6: logits 3 / 0 / -3 -> 1 / .5 / 0.
    # q0 (id 7, .5) logits [[3, 0], [-3, 0]], q1 (id 23, .9) [[0, 0], [0, -3]]:
    # (0,0) .5 vs .45 -> q0; (0,1) .25 vs .45 -> q1; (1,0) 0 vs .45 -> q1;
    # (1,1) .25 vs 0 -> q0. q1 never exceeds .5 (0.5 is not > .5), so its
    # original area is 0 -> rejected, its pixels void.
    logits = np.stack([[[3., 0.], [-3., 0.]], [[0., 0.], [0., -3.]]], -1)
    out = pp.panoptic_merge(
        tf.constant(logits[np.newaxis], tf.float32), tf.constant([[1, 2]]),
        tf.constant([[0.5, 0.9]]), IS_THING, CHANNEL_TO_ID, (2, 2),
        overlap_threshold=0.0, use_hardware_optimization=True)
    np.testing.assert_array_equal(out['category_mask'], [[[7, 0], [0, 7]]])
    np.testing.assert_array_equal(out['instance_mask'], [[[1, 0], [0, 1]]])
    with pytest.raises(ValueError, match='use_hardware_optimization'):
        pp.panoptic_merge(
            tf.zeros([1, 2, 2, 2]), tf.constant([[1, 2]]),
            tf.constant([[0.5, 0.9]]), IS_THING, CHANNEL_TO_ID, (4, 4),
            use_hardware_optimization=True)


# ----------------------------------------------------------------------------
# Layers


def _random_inputs(seed=0, h=8, w=8, c=4, k=3, dtype=np.float32):
    rng = np.random.RandomState(seed)
    heatmaps = (rng.randn(2, h, w, c) * 2).astype(dtype)
    mask_logits = (rng.randn(2, h, w, k) * 3).astype(dtype)
    return heatmaps, mask_logits


def _run_layers(proposal_layer, merger, heatmaps, mask_logits, info=None):
    proposals = proposal_layer(tf.constant(heatmaps))
    merged = merger(tf.constant(mask_logits), proposals['classes'],
                    proposals['scores'], image_info=info)
    return {**proposals, **merged}


def test_layers_config_round_trip():
    proposal_layer = pp.MaskConverProposalGenerator(max_proposals=3)
    merger = pp.PanopticMerger(IS_THING, CHANNEL_TO_ID, output_size=(16, 16),
                               small_area_threshold=2, overlap_threshold=0.3,
                               void_prob_threshold=0.2,
                               duplicate_iou_threshold=0.8, name='merger')
    proposal_copy = pp.MaskConverProposalGenerator.from_config(
        proposal_layer.get_config())
    merger_config = tf_keras.saving.serialize_keras_object(merger)
    merger_copy = tf_keras.saving.deserialize_keras_object(merger_config)
    assert isinstance(merger_copy, pp.PanopticMerger)
    assert merger_copy.get_config() == merger.get_config()
    heatmaps, mask_logits = _random_inputs()
    a = _run_layers(proposal_layer, merger, heatmaps, mask_logits)
    b = _run_layers(proposal_copy, merger_copy, heatmaps, mask_logits)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert a['category_mask'].shape == (2, 16, 16)


def test_mixed_float16_policy_gives_float32_outputs():
    # float16-representable inputs, so both runs see identical values.
    heatmaps, mask_logits = _random_inputs(seed=1, dtype=np.float16)
    info = tf.constant([[[6, 8], [8, 8], [1, 1], [0, 0]]] * 2, tf.float32)
    reference = _run_layers(
        pp.MaskConverProposalGenerator(3),
        pp.PanopticMerger(IS_THING, CHANNEL_TO_ID, (16, 16)),
        heatmaps.astype(np.float32), mask_logits.astype(np.float32), info)
    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy('mixed_float16')
    try:
        mixed = _run_layers(
            pp.MaskConverProposalGenerator(3),
            pp.PanopticMerger(IS_THING, CHANNEL_TO_ID, (16, 16)),
            heatmaps, mask_logits, info)
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)
    for key, value in mixed.items():
        assert value.dtype == reference[key].dtype, key
        assert value.dtype in (tf.float32, tf.int32), key
        np.testing.assert_array_equal(value, reference[key])


def test_functional_model_with_unknown_batch_and_xla():
    # The layers inside a Keras functional model (batch None, per-image
    # image_info) and the same graph under XLA (TPU-ready): int outputs match.
    heatmaps_in = tf_keras.Input([8, 8, 4])
    logits_in = tf_keras.Input([8, 8, 3])
    info_in = tf_keras.Input([4, 2])
    proposals = pp.MaskConverProposalGenerator(3)(heatmaps_in)
    merger = pp.PanopticMerger(IS_THING, CHANNEL_TO_ID, (16, 16),
                               overlap_threshold=0.2)
    merged = merger(logits_in, proposals['classes'], proposals['scores'],
                    image_info=info_in)
    model = tf_keras.Model([heatmaps_in, logits_in, info_in], merged)
    heatmaps, mask_logits = _random_inputs(seed=3)
    info = np.array([[[16, 16], [8, 8], [.5, .5], [0, 0]],
                     [[12, 16], [8, 8], [.5, .5], [0, 0]]], np.float32)
    out = model([heatmaps, mask_logits, info])
    assert out['category_mask'].shape == (2, 16, 16)
    # Image 1 is 12 rows high: canvas rows 12-15 are void.
    assert not out['category_mask'][1, 12:].numpy().any()
    assert out['category_mask'].numpy().any()
    xla = tf.function(model, jit_compile=True)([heatmaps, mask_logits, info])
    for key in ('category_mask', 'instance_mask', 'classes'):
        np.testing.assert_array_equal(xla[key], out[key])


# ----------------------------------------------------------------------------
# TFLite


def _convert_and_check_builtins(fn, input_specs):
    from tensorflow.lite.python import schema_py_generated as schema

    module = tf.Module()
    module.post_process = tf.function(fn, input_signature=input_specs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.post_process.get_concrete_function()], module)
    flatbuffer = converter.convert()
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items()
             if not k.startswith('_')}
    ops = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        assert builtin != schema.BuiltinOperator.CUSTOM, code.CustomCode()
        ops.add(names[builtin])
    return flatbuffer, ops


def _run_tflite(flatbuffer, inputs):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    runner = interpreter.get_signature_runner()
    return runner(**inputs)


def _tflite_case(with_image_info):
    heatmaps, mask_logits = _random_inputs(seed=2, c=5, k=4)
    heatmaps, mask_logits = heatmaps[:1], mask_logits[:1]
    info = np.array([[[24, 32], [8, 8], [0.25, 0.25], [0, 0]]], np.float32)
    specs = [tf.TensorSpec([1, 8, 8, 5], tf.float32, name='heatmaps'),
             tf.TensorSpec([1, 8, 8, 4], tf.float32, name='mask_logits')]
    inputs = {'heatmaps': heatmaps, 'mask_logits': mask_logits}
    if with_image_info:
        specs.append(tf.TensorSpec([1, 4, 2], tf.float32, name='image_info'))
        inputs['image_info'] = info

    def post_process(heatmaps, mask_logits, image_info=None):
        proposals = pp.extract_proposals(heatmaps, max_proposals=4)
        merged = pp.panoptic_merge(
            mask_logits, proposals['classes'], proposals['scores'],
            [False, True, True, False, False], [0, 3, 5, 9, 11], (32, 32),
            overlap_threshold=0.2, image_info=image_info,
            void_prob_threshold=0.3 if with_image_info else None,
            duplicate_iou_threshold=None if with_image_info else 0.3)
        return {**proposals, **merged}

    flatbuffer, ops = _convert_and_check_builtins(post_process, specs)
    expected = post_process(**{k: tf.constant(v) for k, v in inputs.items()})
    got = _run_tflite(flatbuffer, inputs)
    for key in ('category_mask', 'instance_mask', 'classes',
                'center_indices'):
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
        assert got[key].dtype == np.int32, key
    np.testing.assert_allclose(got['scores'], expected['scores'], atol=1e-6)
    # The random masks must exercise the merge: some pixels kept.
    assert (expected['category_mask'].numpy() > 0).any()
    return ops


def test_tflite_builtins_only_plain_resize():
    ops = _tflite_case(with_image_info=False)
    assert {'TOPK_V2', 'MAX_POOL_2D', 'RESIZE_BILINEAR', 'ARG_MAX'} <= ops


def test_tflite_builtins_only_with_image_info():
    # Original 24x32 at scale .25 fills rows 0-5 of the 8x8 input: canvas
    # rows 24-31 are void; the mapping is two BATCH_MATMULs. Also covers the
    # optional void rule.
    ops = _tflite_case(with_image_info=True)
    assert 'BATCH_MATMUL' in ops and 'RESIZE_BILINEAR' not in ops


def test_peak_scores_keep_local_maxima_outside_void():
    # Channel 1, logits (a 3x3 neighbourhood per cell):
    #   -9 -9 -9 -9
    #   -9  2  0 -9      2 is a peak, 0 sits next to it: not a peak;
    #   -9 -9 -9 -9      -1 is a peak; a -9 cell is a peak (plateau) only
    #   -9 -9 -9 -1      with no 2, 0 or -1 around it: (3, 0) and (3, 1).
    # Channel 0 (void) has a 3 that is never a peak.
    logits = np.full([1, 4, 4, 2], -9.0, np.float32)
    logits[0, 1, 1, 1], logits[0, 1, 2, 1], logits[0, 3, 3, 1] = 2, 0, -1
    logits[0, 2, 2, 0] = 3.0
    got = pp.peak_scores(tf.constant(logits)).numpy()
    sig = lambda v: 1 / (1 + np.exp(-v))
    want = np.zeros([4, 4], np.float32)
    want[1, 1], want[3, 3] = sig(2.0), sig(-1.0)
    want[3, 0] = want[3, 1] = sig(-9.0)
    assert not got[..., 0].any()
    np.testing.assert_allclose(got[0, :, :, 1], want, rtol=1e-6)
