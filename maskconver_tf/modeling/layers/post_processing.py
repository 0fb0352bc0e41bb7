"""MaskConver post-processing: center proposals and the panoptic merge.

Pure tensor functions with static shapes (batched, no `tf.map_fn`, no
`tf.unique`, no dynamic-size `tf.where`), so the same graph runs on TPU and
converts to TFLite with builtin ops only; thin Keras layers wrap them.

Conventions: spatial indices are (y, x); "channels" are the model's class
channels (channel 0 = void, see `maskconver_tf.data.descriptor`); outputs
carry dataset category ids through `channel_to_id` (0 = void).

Differences from the reference implementation (official/projects/maskconver):
- Channel 0 (void) never yields a proposal, and a proposal whose channel maps
  to dataset id 0 (void or unused channel) is rejected like a low-score one.
- With `image_info`, canvas pixels outside the original image are void and
  count for no proposal's areas (the reference gives them probability 0.5 for
  every proposal, so the top proposal wins them and its mask area inflates).
- Non-peak proposal picks (score 0) get class channel 0.
"""

from typing import Optional, Sequence, Tuple

import tensorflow as tf

from maskconver_tf._compat import check_tf_keras

tf_keras = check_tf_keras()


def peak_scores(class_heatmaps: tf.Tensor, peak_kernel_size: int = 3,
                peak_error: float = 1e-6) -> tf.Tensor:
    """Sigmoid scores at class-specific local maxima, 0 elsewhere.

    A cell is a peak of class c when its sigmoid score equals (within
    `peak_error`) the max over its `peak_kernel_size` neighbourhood in channel
    c; equal neighbours (a plateau) are all peaks. Channel 0 (void) is 0.

    Args:
      class_heatmaps: float [B, h, w, C] center logits; C static.

    Returns:
      float32 [B, h, w, C].
    """
    probs = tf.sigmoid(tf.cast(class_heatmaps, tf.float32))
    pooled = tf.nn.max_pool2d(probs, peak_kernel_size, 1, 'SAME')
    # pooled >= probs exactly (the max includes the cell itself), so
    # |probs - pooled| < error is pooled - probs < error. Deliberate
    # difference from the reference: channel 0 is void in our channel
    # convention (never a positive target); its bound -1 is never met.
    # A MUL, not a SELECT with a constant 0: the int8 quantiser would put
    # a quantise / dequantise pair on the SELECT's float input.
    c = class_heatmaps.shape[-1]
    bound = tf.constant([-1.0] + [peak_error] * (c - 1), tf.float32)
    return probs * tf.cast(pooled - probs < bound, tf.float32)


def top_k_cells_then_channels(values: tf.Tensor, k: int):
    """`tf.math.top_k` of values flattened to [B, h * w * C], in two stages.

    Stage 1 keeps the k cells with the highest max over channels; stage 2
    takes the top k of those cells' k * C values. The result is exactly the
    flat top k, ties included (equal values in flat-index order): a cell
    holding one of the top k has fewer than k cells ranked before it, each
    holding a value ranked before that one, and the kept cells are put back
    in index order before stage 2. It reads the map twice (max, then k * C
    values) instead of running TopK over all of it: 0.17 instead of 1.57 ms
    in TFLite at 80 x 80 x 201.

    Args:
      values: float [B, h, w, C]; h, w, C static.
      k: int, 0 < k <= h * w * C.

    Returns:
      (values float [B, k] descending, indices int32 [B, k] into the
      flattened h * w * C axis).
    """
    _, h, w, c = values.shape
    if k >= h * w:  # every cell is a candidate
        return tf.math.top_k(tf.reshape(values, [-1, h * w * c]), k=k)
    per_cell = tf.reshape(values, [-1, h * w, c])
    _, cells = tf.math.top_k(tf.reduce_max(per_cell, axis=-1), k=k)
    cells = -tf.math.top_k(-cells, k=k).values  # ascending cell index
    candidates = tf.gather(per_cell, cells, batch_dims=1)  # [B, k, C]
    top, position = tf.math.top_k(tf.reshape(candidates, [-1, k * c]), k=k)
    cell = tf.gather(cells, position // c, batch_dims=1)
    return top, cell * c + position % c


def extract_proposals(class_heatmaps: tf.Tensor, max_proposals: int,
                      peak_kernel_size: int = 3,
                      peak_error: float = 1e-6) -> dict:
    """Picks the top-K class-specific local maxima of the center heatmaps.

    Peaks as `peak_scores`; peaks of different classes at the same cell are
    separate proposals.

    Args:
      class_heatmaps: float [B, h, w, C] center logits; h, w, C static.
      max_proposals: int K <= h * w * C.
      peak_kernel_size: odd int, max-pool window of the peak test.
      peak_error: float, tolerance of the peak test.

    Returns:
      dict with
        classes: int32 [B, K] class channels; 0 for non-peak picks.
        scores: float32 [B, K] sigmoid scores, descending; 0 for non-peak
          picks (when the map has fewer than K peaks).
        center_indices: int32 [B, K, 2] (y, x) on the h x w grid.
    """
    _, h, w, c = class_heatmaps.shape
    if None in (h, w, c):
        raise ValueError('class_heatmaps needs static h, w, C, got shape '
                         f'{class_heatmaps.shape}.')
    if not 0 < max_proposals <= h * w * c:
        raise ValueError(f'max_proposals={max_proposals} must be in '
                         f'[1, h * w * C = {h * w * c}].')
    peaks = peak_scores(class_heatmaps, peak_kernel_size, peak_error)
    scores, flat_index = top_k_cells_then_channels(peaks, max_proposals)
    cell = flat_index // c
    channel = flat_index - cell * c
    y = cell // w
    x = cell - y * w
    classes = tf.where(scores > 0.0, channel, 0)
    return {
        'classes': classes,
        'scores': scores,
        'center_indices': tf.stack([y, x], axis=-1),
    }


def extract_multilevel_proposals(class_heatmaps: tf.Tensor,
                                 grids: Sequence[Tuple[int, int]],
                                 max_proposals: int,
                                 peak_kernel_size: int = 3,
                                 peak_error: float = 1e-6) -> dict:
    """Top-K peaks over all levels of a multi-scale heatmap.

    Peaks as `peak_scores` within each level (the max-pool window never
    spans two levels), then one top-K over every level's cells and classes,
    so K is bounded by the total N * C, not by the coarsest level.

    Args:
      class_heatmaps: float [B, N, C] center logits, levels flattened
        row-major and concatenated (N = sum_l h_l * w_l).
      grids: (h_l, w_l) of each level, in concatenation order.
      max_proposals: int K <= N * C.
      peak_kernel_size, peak_error: as `extract_proposals`.

    Returns:
      dict with classes int32 [B, K] (0 for non-peak picks), scores float32
      [B, K] descending, center_indices int32 [B, K] flat indices into N.
    """
    _, n, c = class_heatmaps.shape
    if sum(h * w for h, w in grids) != n:
        raise ValueError(f'grids {list(grids)} hold '
                         f'{sum(h * w for h, w in grids)} cells; '
                         f'class_heatmaps has {n}')
    if not 0 < max_proposals <= n * c:
        raise ValueError(f'max_proposals={max_proposals} must be in '
                         f'[1, N * C = {n * c}].')
    peaks, offset = [], 0
    for h, w in grids:
        level = tf.reshape(class_heatmaps[:, offset:offset + h * w],
                           [-1, h, w, c])
        peaks.append(tf.reshape(
            peak_scores(level, peak_kernel_size, peak_error), [-1, h * w, c]))
        offset += h * w
    peaks = tf.concat(peaks, axis=1)[:, :, tf.newaxis, :]  # [B, N, 1, C]
    scores, flat_index = top_k_cells_then_channels(peaks, max_proposals)
    cell = flat_index // c
    channel = flat_index - cell * c
    return {'classes': tf.where(scores > 0.0, channel, 0),
            'scores': scores,
            'center_indices': cell}


def _resize_matrix(out_size: int, in_size: int, out_to_in_scale: tf.Tensor,
                   in_offset: tf.Tensor, input_extent: tf.Tensor):
    """Bilinear interpolation matrix and validity of canvas rows (or columns).

    Canvas pixel Y (center Y + 0.5, original-image units) sits at model-input
    position u = (Y + 0.5) * scale - offset, i.e. at grid position
    g = u * in_size / input_extent - 0.5 (half-pixel centers, as
    tf.image.resize). Bilinear weights are the triangle kernel
    max(0, 1 - |g - i|) with g clamped to [0, in_size - 1].

    Args:
      out_size: int, canvas length H.
      in_size: int, logit grid length h.
      out_to_in_scale: float32 [B, 1], input pixels per original pixel.
      in_offset: float32 [B, 1], crop offset of the input in scaled pixels.
      input_extent: float32 [B, 1], input pixels covered by the logit grid.

    Returns:
      weights: float32 [B, H, h].
      inside_input: bool [B, H], canvas pixel center maps into the input.
    """
    canvas = tf.range(out_size, dtype=tf.float32)[tf.newaxis, :] + 0.5
    u = canvas * out_to_in_scale - in_offset
    g = tf.clip_by_value(u * (in_size / input_extent) - 0.5, 0.0,
                         in_size - 1.0)
    grid = tf.range(in_size, dtype=tf.float32)[tf.newaxis, tf.newaxis, :]
    weights = tf.nn.relu(1.0 - tf.abs(g[:, :, tf.newaxis] - grid))
    inside_input = tf.logical_and(u >= 0.0, u < input_extent)
    return weights, inside_input


def _resize_to_original(mask_logits: tf.Tensor, image_info: tf.Tensor,
                        output_size: Tuple[int, int],
                        input_size: Optional[Tuple[int, int]]):
    """Maps logits from the model-input grid back to original-image pixels.

    Model Garden's bilinear_resize_with_crop_and_pad loops over the batch with
    tf.map_fn (a TFLite WHILE), so this is a static-shape equivalent built
    from two batched matmuls.

    Args:
      mask_logits: float32 [B, h, w, K] covering the model input.
      image_info: float32 [B, 4, 2] Model Garden image info: (y, x) rows
        original size, desired size, scale, crop offset.
      output_size: (H, W) canvas in original-image pixels.
      input_size: (y, x) model-input size the grid covers; None uses the
        desired size of image_info (the reference's assumption).

    Returns:
      logits: float32 [B, H, W, K] on the canvas.
      in_image: bool [B, H, W], canvas pixel inside the original image and
        seen by the model.
    """
    _, h, w, k = mask_logits.shape
    out_h, out_w = output_size
    image_info = tf.cast(image_info, tf.float32)
    original = image_info[:, 0, :]
    scale = image_info[:, 2, :]
    offset = image_info[:, 3, :]
    if input_size is None:
        extent = image_info[:, 1, :]
    else:
        extent = tf.ones_like(original) * tf.constant(
            [list(input_size)], tf.float32)
    weights_y, inside_y = _resize_matrix(out_h, h, scale[:, :1],
                                         offset[:, :1], extent[:, :1])
    weights_x, inside_x = _resize_matrix(out_w, w, scale[:, 1:],
                                         offset[:, 1:], extent[:, 1:])
    # Columns first so that only small tensors are transposed.
    cols = tf.reshape(tf.transpose(mask_logits, [0, 2, 1, 3]), [-1, w, h * k])
    cols = tf.reshape(tf.matmul(weights_x, cols), [-1, out_w, h, k])
    rows = tf.reshape(tf.transpose(cols, [0, 2, 1, 3]), [-1, h, out_w * k])
    logits = tf.reshape(tf.matmul(weights_y, rows), [-1, out_h, out_w, k])
    canvas_y = tf.range(out_h, dtype=tf.float32)[tf.newaxis, :]
    canvas_x = tf.range(out_w, dtype=tf.float32)[tf.newaxis, :]
    in_y = tf.logical_and(inside_y, canvas_y < original[:, :1])
    in_x = tf.logical_and(inside_x, canvas_x < original[:, 1:])
    in_image = tf.logical_and(in_y[:, :, tf.newaxis], in_x[:, tf.newaxis, :])
    return logits, in_image


def hard_sigmoid(x: tf.Tensor) -> tf.Tensor:
    """relu6(x + 3) / 6: the reference's on-device mask probability."""
    return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


def slot_areas(winner: tf.Tensor, k: int) -> tf.Tensor:
    """Pixels won by each slot: float32 [B, k] from int32 winner [B, H, W]
    with values in [0, k] (k = a sentinel, not counted).

    One segment sum over the pixels (the sum of one_hot(winner, k) over H, W
    touches k floats per pixel: 2.07 vs 0.04 ms in TFLite at 160 x 160, k
    50). Exact: counts of ones below 2^24.
    """
    batch = tf.shape(winner)[0]
    segments = winner + tf.range(batch)[:, tf.newaxis, tf.newaxis] * (k + 1)
    counts = tf.math.unsorted_segment_sum(
        tf.ones_like(segments, tf.float32), segments, batch * (k + 1))
    return tf.reshape(counts, [-1, k + 1])[:, :k]


def duplicate_proposals(mask_logits: tf.Tensor, scores: tf.Tensor,
                        valid: tf.Tensor, iou_threshold: float) -> tf.Tensor:
    """Proposals whose mask repeats a better one's, whatever their classes.

    Matrix ("fast") mask NMS on the logit grid: q is a duplicate iff some
    valid p with a higher score (or the same score and a lower slot) has
    IoU(p, q) > iou_threshold, masks being logit > 0 (probability > 0.5,
    also under the hard sigmoid). The heatmap's peak NMS works per class
    channel, so one object read as two classes gives two proposals with
    nearly one mask; in `panoptic_merge` they split its pixels and both can
    fail the overlap test, leaving a void hole. A ring and the disc in its
    hole share a center but not a mask, so they are not duplicates.

    Args:
      mask_logits: float [B, h, w, K].
      scores: float [B, K].
      valid: bool [B, K], proposals that may suppress others.
      iou_threshold: float in [0, 1).

    Returns:
      bool [B, K], True for duplicates.
    """
    _, h, w, k = mask_logits.shape
    masks = tf.reshape(tf.cast(mask_logits > 0.0, tf.float32), [-1, h * w, k])
    inter = tf.matmul(masks, masks, transpose_a=True)  # [B, K(p), K(q)]
    area = tf.reduce_sum(masks, axis=1)
    union = area[:, :, tf.newaxis] + area[:, tf.newaxis, :] - inter
    iou = inter / tf.maximum(union, 1.0)
    earlier = tf.range(k)[:, tf.newaxis] < tf.range(k)[tf.newaxis, :]
    better = tf.logical_or(
        scores[:, :, tf.newaxis] > scores[:, tf.newaxis, :],
        tf.logical_and(tf.equal(scores[:, :, tf.newaxis],
                                scores[:, tf.newaxis, :]), earlier))
    suppresses = tf.logical_and(tf.logical_and(better, iou > iou_threshold),
                                valid[:, :, tf.newaxis])
    return tf.reduce_any(suppresses, axis=1)


def panoptic_merge(mask_logits: tf.Tensor, classes: tf.Tensor,
                   scores: tf.Tensor, is_thing_channel: Sequence[bool],
                   channel_to_id: Sequence[int],
                   output_size: Tuple[int, int],
                   object_mask_threshold: float = 0.01,
                   small_area_threshold: int = 0,
                   overlap_threshold: float = 0.7,
                   image_info: Optional[tf.Tensor] = None,
                   input_size: Optional[Tuple[int, int]] = None,
                   void_prob_threshold: Optional[float] = None,
                   use_hardware_optimization: bool = False,
                   duplicate_iou_threshold: Optional[float] = None) -> dict:
    """Merges K scored mask proposals into category and instance maps.

    Steps: logits -> output canvas (plain bilinear resize, or with
    `image_info` back to original-image coordinates) -> sigmoid; a proposal
    is valid iff score > object_mask_threshold and its channel maps to a
    non-zero dataset id (invalid: score, class and mask zeroed); each pixel
    goes to argmax_q(prob_q * score_q) (first slot on ties); with
    original_area(q) = #pixels with prob_q > 0.5 and mask_area(q) = #pixels
    won by q, q is kept iff mask_area > small_area_threshold, original_area
    > 0 and mask_area > overlap_threshold * original_area. Pixels won by a
    rejected proposal are void. Stuff proposals of one class merge in the
    category map (instance 0). Slot k is assumed to be rank k (the
    proposals of `extract_proposals` are sorted by score).

    Args:
      mask_logits: float [B, h, w, K] mask logits on the head grid.
      classes: int [B, K] class channels.
      scores: float [B, K] proposal scores.
      is_thing_channel: bool [C], per channel.
      channel_to_id: int [C], dataset category id per channel (0 = void).
      output_size: (H, W) python ints.
      object_mask_threshold: float, minimum score of a valid proposal.
      small_area_threshold: int, a kept proposal wins more pixels than this.
      overlap_threshold: float, a kept proposal wins more than this fraction
        of its prob > 0.5 area.
      image_info: optional float [B, 4, 2] Model Garden image info ((y, x)
        rows: original size, desired size, scale, crop offset in scaled-image
        pixels: input pixel p shows original (p + offset) / scale; the
        reference applies the offset in original pixels). The canvas is
        then in original-image pixels; canvas pixels outside the original
        image (or not seen by the model) are void and count for no area.
        The reference instead gives them probability 0.5 for every proposal.
      input_size: optional (y, x) model-input size the logit grid covers,
        used with `image_info`; None means the desired size of image_info.
      void_prob_threshold: optional float. If set, a pixel where no valid
        proposal has mask probability >= this is void (not won by anyone);
        the reference has no void competitor, so every pixel goes to some
        proposal. Default None keeps the reference behaviour.
      use_hardware_optimization: if True, hard sigmoid at the native logit
        resolution, no resize (the reference's on-device path); output_size
        must equal (h, w) and image_info must be None.
      duplicate_iou_threshold: optional float. If set, proposals that
        `duplicate_proposals` finds (mask IoU above it with a better valid
        proposal, any class) are invalid. Default None: the reference, which
        lets duplicates compete.

    Returns:
      dict with
        category_mask: int32 [B, H, W] dataset category ids, 0 = void.
        instance_mask: int32 [B, H, W] k + 1 for pixels of the kept thing
          proposal in slot k, 0 for stuff and void.
        classes: int32 [B, K] dataset ids of kept proposals, 0 otherwise.
        scores: float32 [B, K] scores of kept proposals, 0 otherwise.
    """
    _, h, w, k = mask_logits.shape
    if None in (h, w, k):
        raise ValueError('mask_logits needs static h, w, K, got shape '
                         f'{mask_logits.shape}.')
    out_h, out_w = output_size
    mask_logits = tf.cast(mask_logits, tf.float32)
    mask_logits_grid = mask_logits
    classes = tf.cast(classes, tf.int32)
    scores = tf.cast(scores, tf.float32)
    if use_hardware_optimization:
        if (h, w) != (out_h, out_w) or image_info is not None:
            raise ValueError(
                'use_hardware_optimization needs output_size == logit grid '
                f'{(h, w)} (got {tuple(output_size)}) and no image_info.')
        probs = hard_sigmoid(mask_logits)
        in_image = None
    elif image_info is not None:
        logits, in_image = _resize_to_original(mask_logits, image_info,
                                               (out_h, out_w), input_size)
        probs = tf.sigmoid(logits)
    else:
        if (h, w) != (out_h, out_w):
            mask_logits = tf.image.resize(mask_logits, (out_h, out_w))
        probs = tf.sigmoid(mask_logits)
        in_image = None

    dataset_ids = tf.gather(tf.constant(channel_to_id, tf.int32), classes)
    is_thing = tf.gather(tf.constant(is_thing_channel, tf.bool), classes)
    valid = tf.logical_and(scores > object_mask_threshold, dataset_ids > 0)
    if duplicate_iou_threshold is not None:
        # On the logit grid: the same masks as the canvas, at h x w cost.
        valid = tf.logical_and(valid, tf.logical_not(duplicate_proposals(
            mask_logits_grid, scores, valid, duplicate_iou_threshold)))
    # Invalid proposals score 0: they can only win pixels where every
    # product is 0, and are never kept, so those pixels end up void.
    scores = scores * tf.cast(valid, tf.float32)
    # [B, H, W] slot of the best prob x score.
    winner = tf.argmax(probs * scores[:, tf.newaxis, tf.newaxis, :], axis=-1,
                       output_type=tf.int32)
    above_half = probs > 0.5
    owned = in_image
    if in_image is not None:
        above_half = tf.logical_and(above_half, in_image[..., tf.newaxis])
    if void_prob_threshold is not None:
        confident = tf.reduce_any(tf.logical_and(
            probs >= void_prob_threshold, valid[:, tf.newaxis, tf.newaxis, :]),
            axis=-1)
        owned = confident if owned is None else tf.logical_and(owned,
                                                               confident)
    if owned is not None:
        # Slot K is a void sentinel: it has its own area and the lookup 0.
        winner = tf.where(owned, winner, k)
    original_area = tf.reduce_sum(tf.cast(above_half, tf.float32), axis=[1, 2])
    mask_area = slot_areas(winner, k)
    kept = valid & (mask_area > small_area_threshold) & (original_area > 0.0)
    kept = kept & (mask_area > overlap_threshold * original_area)

    kept_ids = tf.where(kept, dataset_ids, 0)
    slot_ids = tf.range(1, k + 1, dtype=tf.int32)[tf.newaxis, :]
    kept_instances = tf.where(kept & is_thing, slot_ids, 0)
    void = tf.zeros_like(kept_ids[:, :1])
    # [B, K + 1] lookup tables; index K (the sentinel) reads 0.
    category_table = tf.concat([kept_ids, void], axis=1)
    instance_table = tf.concat([kept_instances, void], axis=1)
    return {
        'category_mask': tf.gather(category_table, winner, batch_dims=1),
        'instance_mask': tf.gather(instance_table, winner, batch_dims=1),
        'classes': kept_ids,
        'scores': scores * tf.cast(kept, tf.float32),
    }


@tf_keras.utils.register_keras_serializable(package='maskconver')
class MaskConverProposalGenerator(tf_keras.layers.Layer):
    """Keras wrapper of `extract_proposals`; computes in float32."""

    def __init__(self, max_proposals: int, peak_kernel_size: int = 3,
                 peak_error: float = 1e-6, **kwargs):
        # float32 policy: heatmaps from a mixed-precision model are upcast.
        kwargs.setdefault('dtype', 'float32')
        super().__init__(**kwargs)
        self._config = {
            'max_proposals': int(max_proposals),
            'peak_kernel_size': int(peak_kernel_size),
            'peak_error': float(peak_error),
        }

    def call(self, class_heatmaps, grids=None):
        """class_heatmaps float [B, h, w, C] -> `extract_proposals` dict;
        with `grids`, float [B, N, C] of several levels ->
        `extract_multilevel_proposals` dict."""
        if grids is None:
            return extract_proposals(class_heatmaps, **self._config)
        return extract_multilevel_proposals(class_heatmaps, grids,
                                            **self._config)

    def get_config(self):
        return {**super().get_config(), **self._config}


@tf_keras.utils.register_keras_serializable(package='maskconver')
class PanopticMerger(tf_keras.layers.Layer):
    """Keras wrapper of `panoptic_merge`; computes in float32.

    The channel tables are constructor lists (stored in the config) rather
    than weights: they describe the data set, not learned state.
    """

    def __init__(self, is_thing_channel: Sequence[bool],
                 channel_to_id: Sequence[int], output_size: Sequence[int],
                 object_mask_threshold: float = 0.01,
                 small_area_threshold: int = 0,
                 overlap_threshold: float = 0.7,
                 input_size: Optional[Sequence[int]] = None,
                 void_prob_threshold: Optional[float] = None,
                 use_hardware_optimization: bool = False,
                 duplicate_iou_threshold: Optional[float] = None, **kwargs):
        kwargs.setdefault('dtype', 'float32')
        super().__init__(**kwargs)
        if len(is_thing_channel) != len(channel_to_id):
            raise ValueError(
                f'is_thing_channel ({len(is_thing_channel)}) and '
                f'channel_to_id ({len(channel_to_id)}) differ in length.')
        self._config = {
            'is_thing_channel': [bool(v) for v in is_thing_channel],
            'channel_to_id': [int(v) for v in channel_to_id],
            'output_size': [int(v) for v in output_size],
            'object_mask_threshold': float(object_mask_threshold),
            'small_area_threshold': int(small_area_threshold),
            'overlap_threshold': float(overlap_threshold),
            'input_size': (None if input_size is None
                           else [int(v) for v in input_size]),
            'void_prob_threshold': (None if void_prob_threshold is None
                                    else float(void_prob_threshold)),
            'use_hardware_optimization': bool(use_hardware_optimization),
            'duplicate_iou_threshold': (
                None if duplicate_iou_threshold is None
                else float(duplicate_iou_threshold)),
        }

    def call(self, mask_logits, classes, scores, image_info=None):
        """Tensors as in `panoptic_merge`; returns its dict."""
        return panoptic_merge(mask_logits, classes, scores,
                              image_info=image_info, **self._config)

    def get_config(self):
        return {**super().get_config(), **self._config}
