"""Multi-scale MaskConver targets: centers on FPN levels min..max_level.

Pure functions of tensors (usable inside tf.data). Conventions as in
`maskconver_tf.ops.target_ops`: (y, x) coordinates, label maps at network
input resolution [H, W], `category` = model channel (0 void, -1 padded
area), `instance` = thing instance id (0 none), boxes (ymin, xmin, ymax,
xmax) in inclusive pixel indices.

Policies (reference section 7.1 unless noted):
- Centers: one per thing instance at its mask centroid (mean pixel (y, x));
  stuff per `stuff_centers`:
    'class' (default, the reference): one center per stuff class present, at
      the centroid of all its pixels (may fall outside the region), box =
      bounding box of all its pixels;
    'components' (our single-scale policy): the largest dilated connected
      components with at least `min_stuff_area` pixels, each at its region's
      centroid with its region's box.
  Every stuff center's mask target is the whole class mask.
- Gaussian size from the box on the level's grid: (ymax - ymin, xmax - xmin)
  / 2^level (inclusive-index widths, one pixel short, as the single-scale
  targets).
- Level assignment: a segment goes to every level l whose range
  [fpn_low_range[l], fpn_high_range[l]] contains (both ends inclusive) the
  box's half-diagonal 0.5 * sqrt(h^2 + w^2), h and w in input pixels as
  above. A boundary object therefore gets a center on two levels (two slots,
  same mask), as the reference; a segment outside every range gets none.
- Heatmaps per level [H / 2^l, W / 2^l, C] (Gaussians merged by max),
  flattened in raster order and concatenated over levels: [N, C] with
  N = sum_l (H / 2^l) (W / 2^l). Center index of a (segment, level) pair =
  offset_l + floor(cy / 2^l) * (W / 2^l) + floor(cx / 2^l), offset_l = cells
  of the finer levels.
- Slots: (segment, level) pairs in segment order (things in raster order of
  first appearance, then stuff), finer level first within a segment. The
  first K pairs get slots; the rest keep their heatmap peaks but lose mask
  supervision (counted in `num_dropped_segments`). Padding slots: class -1,
  level -1, mask -1 everywhere, weight 0, center index 0.
"""

import tensorflow as tf

from maskconver_tf.ops import target_ops

STUFF_CENTERS = ('class', 'components')


def num_cells(height, width, min_level, max_level):
    """N = sum over levels of (height / 2^l) * (width / 2^l)."""
    return sum((height // 2 ** l) * (width // 2 ** l)
               for l in range(min_level, max_level + 1))


def level_offsets(height, width, min_level, max_level):
    """Flat offset of each level's first cell, list of ints (finest first)."""
    offsets, total = [], 0
    for l in range(min_level, max_level + 1):
        offsets.append(total)
        total += (height // 2 ** l) * (width // 2 ** l)
    return offsets


def flatten_level_weights(padding_mask, min_level, max_level):
    """Per-cell weights (1 - padding) of the concatenated level grids.

    Args:
      padding_mask: float [B, H, W], 1 where the image is padded; H, W
        multiples of 2^max_level.
      min_level, max_level: ints.

    Returns:
      float32 [B, N], the padding mask nearest-resized to every level grid,
      flattened in raster order, concatenated, and subtracted from 1.
    """
    padding = tf.cast(padding_mask, tf.float32)[..., tf.newaxis]
    height, width = padding.shape[1], padding.shape[2]
    weights = []
    for l in range(min_level, max_level + 1):
        h, w = height // 2 ** l, width // 2 ** l
        level = tf.image.resize(padding, [h, w], method='nearest')
        weights.append(tf.reshape(1.0 - level, [-1, h * w]))
    return tf.concat(weights, axis=1)


def _stuff_class_segments(category, is_stuff_channel, num_classes):
    """One segment per stuff channel present: (classes, boxes, centroids).

    Reuses `thing_segments` with the stuff channel as the "instance id":
    order = raster order of first appearance.
    """
    stuff = tf.gather(is_stuff_channel, tf.maximum(category, 0))
    pseudo_instance = tf.where(stuff, category, 0)
    _, classes, boxes, centroids = target_ops.thing_segments(
        category, pseudo_instance, num_classes)
    return classes, boxes, centroids


def build_multiscale_targets(category, instance, is_thing_channel,
                             num_classes, min_level=3, max_level=7,
                             fpn_low_range=(0, 100, 200, 400, 800),
                             fpn_high_range=(100, 200, 400, 800, 12.5e6),
                             num_instances=256, gaussian_iou=0.7,
                             stuff_centers='class', max_num_stuff_centers=1,
                             min_stuff_area=1024, stuff_dilation=61,
                             mask_target_stride=1, center_type='centroid'):
    """All multi-scale training targets of one image (module policies).

    Args:
      category: int32 [H, W] (static H, W multiples of 2^max_level and of
        mask_target_stride), channels (0 void, -1 padded).
      instance: int32 [H, W], instance ids (0 none).
      is_thing_channel: bool [C].
      num_classes: int, C.
      min_level, max_level: ints, FPN levels (stride 2^level).
      fpn_low_range, fpn_high_range: float sequences, one per level, the
        inclusive half-diagonal range (input pixels) of each level.
      num_instances: int, K slots.
      gaussian_iou: float, CenterNet Gaussian min IoU.
      stuff_centers: 'class' or 'components' (module docstring).
      max_num_stuff_centers, min_stuff_area, stuff_dilation: for
        'components', see `target_ops.stuff_segments`.
      mask_target_stride: int s; masks sample the label maps at pixels
        (s * i + s // 2, s * j + s // 2).
      center_type: 'centroid' (the multi-scale reference) or 'box' (box
        centers).

    Returns:
      dict of
        heatmaps: float32 [N, C], levels flattened and concatenated;
        classes: int32 [K] (-1 padding); center_levels: int32 [K] (-1
        padding); center_indices: int32 [K], flat indices into N;
        masks: float32 [H / s, W / s, K] (0/1, -1 padding slots);
        mask_weights: float32 [K]; num_instances: int32 [], real slots;
        num_dropped_segments: int32 [], (segment, level) pairs beyond K.
    """
    if stuff_centers not in STUFF_CENTERS:
        raise ValueError(f'stuff_centers must be one of {STUFF_CENTERS}, got '
                         f'{stuff_centers!r}')
    if center_type not in ('box', 'centroid'):
        raise ValueError("center_type must be 'box' or 'centroid', "
                         f'got {center_type!r}')
    levels = list(range(min_level, max_level + 1))
    if not len(fpn_low_range) == len(fpn_high_range) == len(levels):
        raise ValueError(
            f'fpn_low_range {list(fpn_low_range)} and fpn_high_range '
            f'{list(fpn_high_range)} need one entry per level {levels}')
    height, width = category.shape[0], category.shape[1]
    if height % 2 ** max_level or width % 2 ** max_level:
        raise ValueError(f'label size {(height, width)} is not a multiple of '
                         f'2^max_level = {2 ** max_level}')
    is_thing_channel = tf.convert_to_tensor(is_thing_channel, tf.bool)
    is_stuff = tf.logical_and(tf.logical_not(is_thing_channel),
                              tf.range(num_classes) > 0)

    thing_ids, thing_classes, thing_boxes, thing_centroids = (
        target_ops.thing_segments(category, instance, num_classes))
    if stuff_centers == 'class':
        stuff_classes, stuff_boxes, stuff_centroids = _stuff_class_segments(
            category, is_stuff, num_classes)
    else:
        stuff_classes, stuff_boxes, stuff_centroids = (
            target_ops.stuff_segments(category, is_stuff,
                                      max_num_stuff_centers, min_stuff_area,
                                      stuff_dilation))
    classes = tf.concat([thing_classes, stuff_classes], axis=0)
    boxes = tf.concat([thing_boxes, stuff_boxes], axis=0)
    num_things = tf.shape(thing_classes)[0]
    # Mask key: the instance id for things, the channel for stuff.
    keys = tf.concat([thing_ids, stuff_classes], axis=0)
    is_thing_segment = tf.range(tf.shape(classes)[0]) < num_things
    box_centers, sizes = target_ops.box_centers_and_sizes(boxes, 1)
    centers = (tf.concat([thing_centroids, stuff_centroids], axis=0)
               if center_type == 'centroid' else box_centers)

    # Level assignment: [S, L] inclusive range test on the half-diagonal.
    half_diagonal = 0.5 * tf.norm(sizes, axis=1)
    low = tf.constant(fpn_low_range, tf.float32)
    high = tf.constant(fpn_high_range, tf.float32)
    assigned = tf.logical_and(half_diagonal[:, tf.newaxis] >= low,
                              half_diagonal[:, tf.newaxis] <= high)

    heatmaps, flat_per_level = [], []
    offsets = level_offsets(height, width, min_level, max_level)
    for i, l in enumerate(levels):
        stride = 2 ** l
        h, w = height // stride, width // stride
        on_level = assigned[:, i]
        level_map = target_ops.draw_heatmaps(
            tf.boolean_mask(centers, on_level) / stride,
            tf.boolean_mask(sizes, on_level) / stride,
            tf.boolean_mask(classes, on_level), h, w, num_classes,
            gaussian_iou)
        heatmaps.append(tf.reshape(level_map, [h * w, num_classes]))
        cells = tf.cast(tf.floor(centers / stride), tf.int32)
        flat_per_level.append(offsets[i] + cells[:, 0] * w + cells[:, 1])
    heatmaps = tf.concat(heatmaps, axis=0)

    # (segment, level) pairs in segment-major order.
    pairs = tf.cast(tf.where(assigned), tf.int32)  # [P, 2] (segment, level i)
    segment, level_index = pairs[:, 0], pairs[:, 1]
    flat = tf.gather_nd(tf.stack(flat_per_level, axis=1), pairs)
    num_pairs = tf.shape(pairs)[0]
    num_real = tf.minimum(num_pairs, num_instances)
    pad = [[0, num_instances - num_real]]

    def slots(values, fill):
        return tf.pad(values[:num_real], pad, constant_values=fill)

    slot_classes = slots(tf.gather(classes, segment), -1)
    slot_levels = slots(level_index + min_level, -1)
    slot_indices = slots(flat, 0)
    slot_keys = slots(tf.gather(keys, segment), -1)
    slot_is_thing = slots(tf.gather(is_thing_segment, segment), False)
    slot_real = tf.range(num_instances) < num_real

    masks = target_ops.slot_masks(category, instance, slot_keys,
                                  slot_is_thing, slot_real,
                                  mask_target_stride)
    n = num_cells(height, width, min_level, max_level)
    return {
        'heatmaps': tf.stop_gradient(tf.ensure_shape(heatmaps,
                                                     [n, num_classes])),
        'classes': tf.ensure_shape(slot_classes, [num_instances]),
        'center_levels': tf.ensure_shape(slot_levels, [num_instances]),
        'center_indices': tf.ensure_shape(slot_indices, [num_instances]),
        'masks': tf.ensure_shape(
            masks, [height // mask_target_stride, width // mask_target_stride,
                    num_instances]),
        'mask_weights': tf.cast(slot_real, tf.float32),
        'num_instances': num_real,
        'num_dropped_segments': num_pairs - num_real,
    }
