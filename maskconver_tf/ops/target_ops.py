"""MaskConver training targets: centers, Gaussian heatmaps, K-slot packing.

Pure functions of tensors (usable inside tf.data). Conventions: coordinates
are (y, x); label maps are at network-input resolution [H, W] with
`category` = model channel (0 void, -1 padded area) and `instance` = thing
instance id (0 none). A "segment" is a thing instance or a stuff center; its
box is (ymin, xmin, ymax, xmax) in inclusive pixel indices.
"""

import tensorflow as tf
from official.projects.centernet.ops import target_assigner

from maskconver_tf.ops import connected_components


def gaussian_sigma(box_height, box_width, min_iou):
    """Per-box Gaussian sigma of the CenterNet rule.

    sigma = (2 * max(floor(r), 0) + 1) / 6 with r the min of the three
    CenterNet radius roots (each (-b + sqrt(b^2 - 4ac)) / 2, the "divide by
    2" quirk); Model Garden's implementation is exactly this, so it is reused.

    Args:
      box_height: float32 [N], box heights on the heatmap grid.
      box_width: float32 [N], box widths on the heatmap grid.
      min_iou: float, minimum IoU (config `gaussian_iou`, 0.7).

    Returns:
      float32 [N].
    """
    return target_assigner.compute_std_dev_from_box_size(
        tf.cast(box_height, tf.float32), tf.cast(box_width, tf.float32),
        min_iou)


def draw_heatmaps(centers, box_sizes, classes, height, width, num_classes,
                  min_iou):
    """Per-class center heatmaps: a Gaussian per segment, merged by max.

    Each Gaussian exp(-d^2 / (2 sigma^2)) is centred on the floored center
    cell, so its value is exactly 1.0 there. Model Garden's
    `assign_center_targets` computes the same map through an
    [h, w, N, C] tensor; a segment-max over classes needs only [N, h, w].

    Args:
      centers: float32 [N, 2], (y, x) centers on the heatmap grid.
      box_sizes: float32 [N, 2], (height, width) of the boxes on the grid.
      classes: int32 [N], channels in [1, num_classes).
      height, width: int, heatmap size.
      num_classes: int, C.
      min_iou: float, gaussian IoU.

    Returns:
      float32 [height, width, num_classes], values in [0, 1].
    """
    sigma = gaussian_sigma(box_sizes[:, 0], box_sizes[:, 1], min_iou)
    cells = tf.floor(centers)
    y = tf.range(height, dtype=tf.float32)[tf.newaxis, :, tf.newaxis]
    x = tf.range(width, dtype=tf.float32)[tf.newaxis, tf.newaxis, :]
    dist2 = ((y - cells[:, 0, tf.newaxis, tf.newaxis]) ** 2 +
             (x - cells[:, 1, tf.newaxis, tf.newaxis]) ** 2)
    gaussians = tf.exp(-dist2 / (2.0 * sigma[:, tf.newaxis, tf.newaxis] ** 2))
    # Empty classes get the lowest float from the segment max: clamp to 0.
    heatmaps = tf.maximum(tf.math.unsorted_segment_max(
        gaussians, classes, num_segments=num_classes), 0.0)
    heatmaps = tf.transpose(heatmaps, [1, 2, 0])
    return tf.ensure_shape(heatmaps, [height, width, num_classes])


def _coordinates(height, width):
    """int32 [H, W] y and x coordinate maps."""
    y, x = tf.meshgrid(tf.range(height), tf.range(width), indexing='ij')
    return y, x


def thing_segments(category, instance, num_classes):
    """One segment per distinct instance id > 0.

    Class = the most frequent channel among the instance's pixels; instances
    whose majority is void (0) are skipped (void is never a positive).

    Args:
      category: int32 [H, W], channels (0 void, -1 padding).
      instance: int32 [H, W], instance ids (0 none).
      num_classes: int, C.

    Returns:
      ids: int32 [Nt], instance ids in raster order of first appearance.
      classes: int32 [Nt].
      boxes: int32 [Nt, 4], (ymin, xmin, ymax, xmax) inclusive.
      centroids: float32 [Nt, 2], (y, x) mean pixel coordinates.
    """
    height, width = tf.shape(instance)[0], tf.shape(instance)[1]
    flat_instance = tf.reshape(instance, [-1])
    ids, index = tf.unique(flat_instance)
    num_ids = tf.shape(ids)[0]
    flat_category = tf.maximum(tf.reshape(category, [-1]), 0)
    counts = tf.math.unsorted_segment_sum(
        tf.ones_like(flat_category), index * num_classes + flat_category,
        num_segments=num_ids * num_classes)
    classes = tf.argmax(tf.reshape(counts, [num_ids, num_classes]), axis=1,
                        output_type=tf.int32)
    y, x = _coordinates(height, width)
    y, x = tf.reshape(y, [-1]), tf.reshape(x, [-1])
    boxes = tf.stack([
        tf.math.unsorted_segment_min(y, index, num_ids),
        tf.math.unsorted_segment_min(x, index, num_ids),
        tf.math.unsorted_segment_max(y, index, num_ids),
        tf.math.unsorted_segment_max(x, index, num_ids)], axis=1)
    centroids = tf.stack([
        tf.math.unsorted_segment_mean(tf.cast(y, tf.float32), index, num_ids),
        tf.math.unsorted_segment_mean(tf.cast(x, tf.float32), index, num_ids)],
        axis=1)
    keep = tf.logical_and(ids > 0, classes > 0)
    return (tf.boolean_mask(ids, keep), tf.boolean_mask(classes, keep),
            tf.boolean_mask(boxes, keep), tf.boolean_mask(centroids, keep))


def _dilate_last_axis(x, size):
    """OR over a centred window of odd `size` along the last axis of bool x.

    Doubling: after k steps m[j] = OR x[j .. j + 2^k - 1]; two windows of the
    largest power of two P <= size cover [i - r, i + r] (2P > size).
    """
    r = size // 2
    n = tf.shape(x)[-1]
    paddings = [[0, 0]] * (x.shape.rank - 1) + [[r, r]]
    m = tf.pad(x, paddings)
    length = 1
    while 2 * length <= size:
        m = tf.logical_or(m[..., :-length], m[..., length:])
        length *= 2
    start = 2 * r - length + 1
    return tf.logical_or(m[..., :n], m[..., start:start + n])


def _first_true(x):
    """int32 [N], index of the first True along the last axis of [N, L]."""
    return tf.argmax(tf.cast(x, tf.int32), axis=-1, output_type=tf.int32)


def _last_true(x):
    """int32 [N], index of the last True along the last axis of [N, L]."""
    return tf.shape(x)[-1] - 1 - _first_true(tf.reverse(x, [-1]))


def dilate(masks, size):
    """Binary dilation by a size x size square (SAME, clipped at borders).

    Equal to the reference's three 21x21 max-pools for size 61; done
    separably with O(log size) shifted ORs per axis (a 61-wide max-pool is
    several times slower on CPU).

    Args:
      masks: bool [S, H, W].
      size: odd int.

    Returns:
      bool [S, H, W].
    """
    x = _dilate_last_axis(tf.cast(masks, tf.bool), size)
    x = _dilate_last_axis(tf.transpose(x, [0, 2, 1]), size)
    return tf.ensure_shape(tf.transpose(x, [0, 2, 1]), masks.shape)


def stuff_segments(category, is_stuff_channel, max_num_stuff_centers,
                   min_area, dilation):
    """Stuff centers from connected components of dilated class masks.

    For each stuff channel present (ascending): dilate its mask M by a
    `dilation` square, label 4-connected components, take the
    `max_num_stuff_centers` largest components (by dilated size); each kept
    component's region (component AND M) becomes a center if it has at least
    `min_area` pixels, with the region's box. Every center's mask target is
    the whole class mask M (not the region), as the reference.

    Args:
      category: int32 [H, W], channels (0 void, -1 padding).
      is_stuff_channel: bool [C] (False for void).
      max_num_stuff_centers: int, centers per class at most.
      min_area: int, minimum region area in input pixels.
      dilation: odd int, dilation square size (61 = reference).

    Returns:
      classes: int32 [Ns], channels (ascending, components by size).
      boxes: int32 [Ns, 4], (ymin, xmin, ymax, xmax) inclusive of the region.
      centroids: float32 [Ns, 2], (y, x) mean pixel coordinates of the region.
    """
    num_classes = tf.shape(is_stuff_channel)[0]
    height, width = tf.shape(category)[0], tf.shape(category)[1]
    num_pixels = height * width
    flat_category = tf.reshape(category, [-1])
    present = tf.math.bincount(tf.maximum(flat_category, 0),
                               minlength=num_classes, maxlength=num_classes) > 0
    channels = tf.cast(tf.where(tf.logical_and(present, is_stuff_channel))[:, 0],
                       tf.int32)
    num_stuff = tf.shape(channels)[0]
    masks = tf.equal(category[tf.newaxis], channels[:, tf.newaxis, tf.newaxis])
    roots = connected_components.label_components(dilate(masks, dilation))
    # Component sizes per (class, root label); root label 0 = background.
    offsets = tf.range(num_stuff)[:, tf.newaxis] * (num_pixels + 1)
    segments = tf.reshape(roots, [num_stuff, -1]) + offsets
    component_size = tf.math.unsorted_segment_sum(
        tf.ones_like(segments), segments, num_stuff * (num_pixels + 1))
    component_size = tf.reshape(component_size, [num_stuff, num_pixels + 1])
    component_size = tf.concat(
        [tf.zeros_like(component_size[:, :1]), component_size[:, 1:]], axis=1)
    k = max_num_stuff_centers
    sizes, labels = tf.math.top_k(component_size, k=k)
    # Regions of the kept components: [S, k, H, W].
    regions = tf.logical_and(
        tf.equal(roots[:, tf.newaxis], labels[:, :, tf.newaxis, tf.newaxis]),
        masks[:, tf.newaxis])
    regions = tf.reshape(regions, [num_stuff * k, height, width])
    row_counts = tf.reduce_sum(tf.cast(regions, tf.float32), axis=2)
    col_counts = tf.reduce_sum(tf.cast(regions, tf.float32), axis=1)
    boxes = tf.stack([_first_true(row_counts > 0), _first_true(col_counts > 0),
                      _last_true(row_counts > 0), _last_true(col_counts > 0)],
                     axis=1)
    area = tf.reduce_sum(row_counts, axis=1)
    centroids = tf.stack([
        tf.reduce_sum(row_counts * tf.range(height, dtype=tf.float32), axis=1),
        tf.reduce_sum(col_counts * tf.range(width, dtype=tf.float32), axis=1)],
        axis=1) / tf.maximum(area, 1.0)[:, tf.newaxis]
    keep = tf.logical_and(tf.reshape(sizes, [-1]) > 0, area >= min_area)
    classes = tf.repeat(channels, k)
    return (tf.boolean_mask(classes, keep), tf.boolean_mask(boxes, keep),
            tf.boolean_mask(centroids, keep))


def box_centers_and_sizes(boxes, stride):
    """Box centers and sizes on the heatmap grid.

    Args:
      boxes: int32 [N, 4], (ymin, xmin, ymax, xmax) inclusive, input pixels.
      stride: int, 2^level.

    Returns:
      centers: float32 [N, 2], (y, x) = ((ymin + ymax) / 2, ...) / stride.
      sizes: float32 [N, 2], (ymax - ymin, xmax - xmin) / stride (inclusive
        widths: one pixel short, as the reference).
    """
    boxes = tf.cast(boxes, tf.float32)
    centers = (boxes[:, :2] + boxes[:, 2:]) / (2.0 * stride)
    sizes = (boxes[:, 2:] - boxes[:, :2]) / stride
    return centers, sizes


def slot_masks(category, instance, slot_keys, slot_is_thing, slot_real,
               stride):
    """Binary mask targets of the K slots, sampled every `stride` pixels.

    A thing slot's mask is its instance id, a stuff slot's its whole class
    mask (the key compared with the category map).

    Args:
      category, instance: int [H, W] maps (the keys' id spaces).
      slot_keys: int [K] instance id (things) or category id (stuff).
      slot_is_thing, slot_real: bool [K].
      stride: int, sample pixel (s // 2 + s * i, s // 2 + s * j).

    Returns:
      float32 [H / s, W / s, K]: 0 / 1, -1 in padding slots.
    """
    sub_category = category[stride // 2::stride, stride // 2::stride,
                            tf.newaxis]
    sub_instance = instance[stride // 2::stride, stride // 2::stride,
                            tf.newaxis]
    masks = tf.where(slot_is_thing, tf.equal(sub_instance, slot_keys),
                     tf.equal(sub_category, slot_keys))
    return tf.where(slot_real, tf.cast(masks, tf.float32), -1.0)


def build_targets(category, instance, is_thing_channel, num_classes, level=3,
                  num_instances=50, gaussian_iou=0.7, max_num_stuff_centers=1,
                  min_stuff_area=1024, stuff_dilation=61,
                  mask_target_stride=1, center_type='box'):
    """All single-scale training targets of one image.

    Segments are things (raster order of first appearance) then stuff centers.
    Policies:
    - Every segment draws its heatmap peak, also those beyond K (reference).
    - K overflow: the first K segments get mask slots; the rest (stuff first,
      being last) lose mask supervision and are counted in
      `num_dropped_segments`.
    - Padding slots: class -1, mask -1 everywhere, weight 0, center (0, 0).

    Args:
      category: int32 [H, W] (static H, W), channels (0 void, -1 padded).
      instance: int32 [H, W], instance ids (0 none).
      is_thing_channel: bool [C].
      num_classes: int, C.
      level: int, heatmap stride 2^level; H and W must be multiples of it.
      num_instances: int, K.
      gaussian_iou: float.
      max_num_stuff_centers, min_stuff_area, stuff_dilation: see
        `stuff_segments`.
      mask_target_stride: int s; mask targets sample the label maps at
        pixels (s * i + s // 2, s * j + s // 2), H and W multiples of s.
      center_type: 'box' (box centers, the single-scale reference) or
        'centroid' (mean pixel coordinates of the thing / stuff region); the
        Gaussian size comes from the box either way.

    Returns:
      dict of
        heatmaps: float32 [H / 2^level, W / 2^level, C];
        classes: int32 [K]; masks: float32 [H / s, W / s, K];
        mask_weights: float32 [K]; center_indices: int32 [K, 2] (y, x);
        num_instances: int32 []; num_dropped_segments: int32 [].
    """
    if center_type not in ('box', 'centroid'):
        raise ValueError("center_type must be 'box' or 'centroid', "
                         f'got {center_type!r}')
    height, width = category.shape[0], category.shape[1]
    stride = 2 ** level
    is_thing_channel = tf.convert_to_tensor(is_thing_channel, tf.bool)
    is_stuff = tf.logical_and(tf.logical_not(is_thing_channel),
                              tf.range(num_classes) > 0)
    thing_ids, thing_classes, thing_boxes, thing_centroids = thing_segments(
        category, instance, num_classes)
    stuff_classes, stuff_boxes, stuff_centroids = stuff_segments(
        category, is_stuff, max_num_stuff_centers, min_stuff_area,
        stuff_dilation)
    classes = tf.concat([thing_classes, stuff_classes], axis=0)
    boxes = tf.concat([thing_boxes, stuff_boxes], axis=0)
    num_things = tf.shape(thing_classes)[0]
    num_segments = tf.shape(classes)[0]
    # Mask key per segment: the instance id for things, the channel for stuff.
    keys = tf.concat([thing_ids, stuff_classes], axis=0)

    centers, sizes = box_centers_and_sizes(boxes, stride)
    if center_type == 'centroid':
        centers = tf.concat([thing_centroids, stuff_centroids], axis=0) / stride
    heatmaps = draw_heatmaps(centers, sizes, classes, height // stride,
                             width // stride, num_classes, gaussian_iou)

    num_real = tf.minimum(num_segments, num_instances)
    pad = [[0, num_instances - num_real]]
    slot_classes = tf.pad(classes[:num_real], pad, constant_values=-1)
    slot_keys = tf.pad(keys[:num_real], pad, constant_values=-1)
    slot_is_thing = tf.range(num_instances) < num_things
    slot_real = tf.range(num_instances) < num_real
    cells = tf.cast(tf.floor(centers[:num_real]), tf.int32)
    center_indices = tf.pad(cells, pad + [[0, 0]])

    masks = slot_masks(category, instance, slot_keys, slot_is_thing,
                       slot_real, mask_target_stride)
    return {
        'heatmaps': tf.stop_gradient(heatmaps),
        'classes': tf.ensure_shape(slot_classes, [num_instances]),
        'masks': tf.ensure_shape(
            masks, [height // mask_target_stride, width // mask_target_stride,
                    num_instances]),
        'mask_weights': tf.cast(slot_real, tf.float32),
        'center_indices': tf.ensure_shape(center_indices, [num_instances, 2]),
        'num_instances': num_real,
        'num_dropped_segments': num_segments - num_real,
    }
