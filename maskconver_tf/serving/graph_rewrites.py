"""Graph rewrites of the export: the same function, in a form LiteRT runs fast.

Each is a pure function (or a scope) of tensors / layers with its own
numerics test (tests/test_graph_rewrites.py: rewritten vs original on the
same inputs); `export_module` only assembles them:
- `merge_at_stride` (+ `nearest_upsample`): the panoptic merge on a coarser
  canvas, int maps upsampled by repetition;
- `split_depthwise_conv` (+ `depthwise_tiles`, `reachable_taps`): a large
  SAME depthwise conv as a sum of <= 25-tap convs, which XNNPACK's int8
  kernels run ~24x faster;
- `fold_batch_norm`: inference BatchNorm folded into the depthwise kernel
  and bias before it is split;
- `split_large_depthwise`: a scope in which a model's large depthwise
  layers compute the two above;
- `sparse_heads` (+ `supports_sparse_heads`, `depthwise_at`): the
  center-embedding head's last depthwise conv and the heads' per-pixel
  tails run only at the K proposals.
"""

import contextlib
import functools
from typing import Optional, Sequence

import tensorflow as tf
import tf_keras

from maskconver_tf.modeling.layers import post_processing
from maskconver_tf.modeling.layers.mask_embedding_generator import (
    gather_slots)


def nearest_upsample(mask: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
    """Nearest-neighbour resize of an int [B, h, w] map (pixel i reads
    min(h - 1, i * h // H)).

    TFLite's RESIZE_NEAREST_NEIGHBOR has no int32 kernel. An integer factor
    repeats every cell s x s times with one TILE (160 -> 640 in TFLite: 0.74
    ms; 1.17 with the new axes added by slicing, 2.27 by GATHERs); any other
    size takes a GATHER per axis.
    """
    _, h, w = mask.shape
    if size[0] % h == 0 and size[1] % w == 0:
        sy, sx = size[0] // h, size[1] // w
        tiled = tf.tile(tf.reshape(mask, [-1, h, 1, w, 1]), [1, 1, sy, 1, sx])
        return tf.reshape(tiled, [-1, size[0], size[1]])
    rows = [min(h - 1, (i * h) // size[0]) for i in range(size[0])]
    cols = [min(w - 1, (j * w) // size[1]) for j in range(size[1])]
    mask = tf.gather(mask, tf.constant(rows, tf.int32), axis=1)
    return tf.gather(mask, tf.constant(cols, tf.int32), axis=2)


def merge_at_stride(model: tf_keras.Model, mask_logits: tf.Tensor,
                    classes: tf.Tensor, scores: tf.Tensor,
                    output_size: Sequence[int], merge_stride: int) -> dict:
    """Panoptic merge on a canvas `merge_stride` times coarser, then nearest.

    The full-resolution merge touches K x H x W floats (20M at 640 px, K 50),
    which dominates a mobile pipeline; merging at H / s, W / s and
    upsampling the int maps keeps the rule (argmax of prob x score, the
    same overlap test; the area threshold is scaled by 1 / s^2) at 1 / s^2
    of the cost. merge_stride 1 is the Keras model's own merge.

    Args:
      model: the MaskConverModel (its `panoptic_merger` config is used).
      mask_logits: float32 [B, h, w, K].
      classes: int32 [B, K] class channels.
      scores: float32 [B, K].
      output_size: (H, W) of the returned maps.
      merge_stride: int >= 1 dividing H and W.

    Returns:
      `post_processing.panoptic_merge` dict with maps int32 [B, H, W].
    """
    config = dict(model.panoptic_merger.get_config())
    keys = ('is_thing_channel', 'channel_to_id', 'object_mask_threshold',
            'small_area_threshold', 'overlap_threshold',
            'void_prob_threshold', 'duplicate_iou_threshold')
    kwargs = {k: config[k] for k in keys if k in config}
    h, w = (int(v) for v in output_size)
    if h % merge_stride or w % merge_stride:
        raise ValueError(f'merge_stride {merge_stride} must divide the output '
                         f'size {(h, w)}')
    small = (h // merge_stride, w // merge_stride)
    kwargs['small_area_threshold'] = int(
        kwargs.get('small_area_threshold', 0) // (merge_stride ** 2))
    merged = post_processing.panoptic_merge(
        mask_logits, classes, scores, output_size=small, **kwargs)
    if merge_stride > 1:
        for key in ('category_mask', 'instance_mask'):
            merged[key] = nearest_upsample(merged[key], (h, w))
    return merged


def _bounds(size: int, step: int):
    return [(s, min(size, s + step)) for s in range(0, size, step)]


def depthwise_tiles(kh: int, kw: int, max_taps: int = 25):
    """Rectangles [(r0, r1, c0, c1)] tiling a kh x kw kernel, each of at most
    `max_taps` taps: full-height column strips when a column fits (7x7 ->
    7x3 + 7x3 + 7x1), else square tiles of side floor(sqrt(max_taps))."""
    if kh <= max_taps:
        return [(0, kh, c0, c1) for c0, c1 in _bounds(kw, max_taps // kh)]
    side = max(1, int(max_taps ** 0.5))
    return [(r0, r1, c0, c1) for r0, r1 in _bounds(kh, side)
            for c0, c1 in _bounds(kw, side)]


def reachable_taps(kernel: tf.Tensor, top: int, left: int, h: int, w: int):
    """Crops a SAME depthwise kernel to the taps that can reach the image.

    On an input smaller than the kernel (the 1x1 / 2x2 top FPN levels of a
    small image), tap row r of a kernel padded `top` rows reads only padding
    for every output row when |r - top| >= h (columns likewise), so it adds
    zero. Cropping is exact, and keeps identically-zero tiles out of the
    graph: their calibrated int8 range is degenerate (scale ~1e-8), which
    XNNPACK refuses to run (requantisation scale >= 256).

    Args:
      kernel: [kh, kw, C, M].
      top, left: SAME padding above / left of the input.
      h, w: static input height and width.

    Returns:
      (cropped kernel, its top padding, its left padding).
    """
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    r0, r1 = max(0, top - h + 1), min(kh, top + h)
    c0, c1 = max(0, left - w + 1), min(kw, left + w)
    return kernel[r0:r1, c0:c1], top - r0, left - c0


def split_depthwise_conv(x: tf.Tensor, kernel: tf.Tensor, max_taps: int = 25,
                         bias: Optional[tf.Tensor] = None) -> tf.Tensor:
    """SAME, stride-1 depthwise conv as a sum of small-kernel convs.

    The k x k kernel, cropped to the taps that reach the image
    (`reachable_taps`), is cut into `depthwise_tiles` of at most max_taps
    taps (7x7 -> 7x3 + 7x3 + 7x1); each runs VALID on the matching window of the
    once-padded input, and the partial results are summed. Exactly the same
    function as the k x k conv (the same weights, float rounding aside), but
    LiteRT's XNNPACK runs int8 depthwise kernels of up to 25 taps ~24x faster
    than 7x7 on x86, and every tile costs alike (0.18 ms up to 25 taps, 0.08
    ms up to 9, one more ADD 0.05-0.08 ms: benchmarks/depthwise_tiles.py),
    so the fewest tiles win.

    Args:
      x: float [B, H, W, C] with static H, W.
      kernel: [kh, kw, C, M] depthwise kernel.
      max_taps: most taps per tile.
      bias: optional [C * M], added to the first tile (TFLite fuses it into
        that conv instead of adding one more int8 requantisation).

    Returns:
      float [B, H, W, C * M].
    """
    _, h, w, _ = x.shape
    padded, kernel = _pad_same(x, kernel)
    return _sum_of_tiles(
        kernel, max_taps, bias,
        lambda r0, r1, c0, c1: padded[:, r0:r0 + h + r1 - r0 - 1,
                                      c0:c0 + w + c1 - c0 - 1, :])


def _pad_same(x, kernel):
    """(x zero-padded as a SAME conv pads it, kernel cropped to the taps
    that reach the image: `reachable_taps`)."""
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    _, h, w, _ = x.shape
    kernel, top, left = reachable_taps(kernel, (kh - 1) // 2, (kw - 1) // 2,
                                       h, w)
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    return tf.pad(x, [[0, 0], [top, kh - 1 - top], [left, kw - 1 - left],
                      [0, 0]]), kernel


def _sum_of_tiles(kernel, max_taps, bias, window):
    """Sum over `depthwise_tiles` of the VALID conv of tile (r0, r1, c0, c1)
    with `window(r0, r1, c0, c1)`; bias on the first tile."""
    out = None
    for r0, r1, c0, c1 in depthwise_tiles(int(kernel.shape[0]),
                                          int(kernel.shape[1]), max_taps):
        y = tf.nn.depthwise_conv2d(window(r0, r1, c0, c1),
                                   kernel[r0:r1, c0:c1], [1, 1, 1, 1],
                                   'VALID')
        if out is None:
            out = y if bias is None else tf.nn.bias_add(y, bias)
        else:
            out += y
    return out


def depthwise_at(x: tf.Tensor, kernel: tf.Tensor, indices: tf.Tensor,
                 max_taps: int = 25, bias: Optional[tf.Tensor] = None
                 ) -> tf.Tensor:
    """A SAME, stride-1 depthwise conv evaluated at K cells only.

    Gathers the kh x kw window around each cell from the zero-padded input
    and runs the kernel VALID on the K windows (as `depthwise_tiles`, so
    every piece stays a fast XNNPACK kernel): the conv's output at those
    cells, exactly, at K / (h w) of the cost.

    Args:
      x: float [B, h, w, C] with static h, w.
      kernel: [kh, kw, C, M] depthwise kernel.
      indices: int32 [B, K, 2], (y, x) cells in [0, h) x [0, w).
      max_taps: most taps per piece.
      bias: optional [C * M].

    Returns:
      float [B, K, C * M]: row k is the conv's output at indices[:, k].
    """
    channels = x.shape[-1]
    padded, kernel = _pad_same(x, kernel)
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    # Output cell (y, x) reads padded rows y .. y + kh - 1, columns likewise.
    offsets = tf.constant([[r, c] for r in range(kh) for c in range(kw)],
                          tf.int32)
    cells = indices[:, :, tf.newaxis, :] + offsets
    windows = tf.reshape(tf.gather_nd(padded, cells, batch_dims=1),
                         [-1, kh, kw, channels])
    out = _sum_of_tiles(kernel, max_taps, bias,
                        lambda r0, r1, c0, c1: windows[:, r0:r1, c0:c1])
    return tf.reshape(out, [-1, indices.shape[1], out.shape[-1]])


def _split_depthwise_call(layer, max_taps, inputs):
    outputs = split_depthwise_conv(inputs, layer.depthwise_kernel, max_taps,
                                   layer.bias if layer.use_bias else None)
    return layer.activation(outputs) if layer.activation else outputs


def is_batch_norm(layer) -> bool:
    """A (synchronised) tf_keras BatchNormalization."""
    return isinstance(layer, (
        tf_keras.layers.BatchNormalization,
        tf_keras.layers.experimental.SyncBatchNormalization))


def fold_batch_norm(layer: tf_keras.layers.DepthwiseConv2D,
                    norm: tf_keras.layers.Layer):
    """(kernel [kh, kw, C, M], bias [C * M]) of depthwise -> inference BN."""
    if (layer.use_bias or layer.activation not in (None,
                                                   tf_keras.activations.linear)
            or not is_batch_norm(norm) or norm.axis not in ([-1], [3])):
        raise ValueError(f'cannot fold {norm.name} into {layer.name}: '
                         'expected a bias-free linear depthwise conv followed '
                         'by a channel-last BatchNormalization')
    scale = tf.math.rsqrt(norm.moving_variance + norm.epsilon)
    if norm.scale:
        scale *= norm.gamma
    offset = -norm.moving_mean * scale
    if norm.center:
        offset += norm.beta
    kernel = layer.depthwise_kernel
    # BatchNorm variables stay float32 under a mixed-precision policy.
    scale, offset = (tf.cast(t, kernel.dtype) for t in (scale, offset))
    return kernel * tf.reshape(scale, [1, 1] + kernel.shape[2:]), offset


def _split_folded_call(layer, norm, max_taps, inputs):
    kernel, bias = fold_batch_norm(layer, norm)
    return split_depthwise_conv(inputs, kernel, max_taps, bias)


def _inference_identity(inputs, training=None):
    del training
    return inputs


def _same_stride_one_depthwise(layer) -> bool:
    """A channel-last SAME depthwise conv, stride 1, no dilation: what
    `split_depthwise_conv` and `depthwise_at` compute."""
    return (isinstance(layer, tf_keras.layers.DepthwiseConv2D)
            and tuple(layer.strides) == (1, 1)
            and tuple(layer.dilation_rate) == (1, 1)
            and layer.padding == 'same'
            and layer.data_format == 'channels_last')


def _splittable(layer, max_taps: int) -> bool:
    return (_same_stride_one_depthwise(layer)
            and layer.kernel_size[0] * layer.kernel_size[1] > max_taps)


@contextlib.contextmanager
def split_large_depthwise(model: tf_keras.Model, max_taps: int = 25):
    """Within the scope, depthwise layers of more than `max_taps` taps (SAME,
    stride 1, no dilation) of `model` compute `split_depthwise_conv`.

    A split layer that a submodule's `depthwise_norm_pairs()` pairs with
    the BatchNormalization right after it gets that norm folded into its
    pieces (the norm becomes the identity): int8 then quantises the
    normalised sum, not the raw per-piece sums whose channel ranges differ
    by orders of magnitude (int8 .tflite of a trained shapes model: 16.0
    PQ unfolded, 34.3 folded, 35.1 unsplit, 36.3 float; four tiles per
    7x7). Inference only: the folded call ignores `training`.

    Used while the export traces its graph; the layers and weights are
    unchanged (checkpoints still match). Yields the number of layers split.
    """
    folds = {}
    for module in model.submodules:
        for layer, norm in getattr(module, 'depthwise_norm_pairs',
                                   lambda: [])():
            if _splittable(layer, max_taps) and is_batch_norm(norm):
                folds[id(layer)] = norm
    patched, num_split = [], 0
    for layer in model.submodules:
        if not _splittable(layer, max_taps):
            continue
        num_split += 1
        norm = folds.get(id(layer))
        if norm is None:
            layer.call = functools.partial(_split_depthwise_call, layer,
                                           max_taps)
        else:
            layer.call = functools.partial(_split_folded_call, layer, norm,
                                           max_taps)
            norm.call = _inference_identity
            patched.append(norm)
        patched.append(layer)
    try:
        yield num_split
    finally:
        for layer in patched:
            del layer.call


def supports_sparse_heads(model) -> bool:
    """Whether `sparse_heads` applies: the center-embedding and
    mask-feature heads end in per-pixel (1x1) tails."""
    center = getattr(model, 'center_head', None)
    pixel = getattr(model, 'mask_feature_head', None)
    return bool(getattr(center, 'has_pointwise_tail', False)
                and getattr(pixel, 'has_pointwise_tail', False))


def _center_features_at(head, features, indices):
    """`head.spatial_features` at the K cells, float [B, K, C]: with its
    last depthwise conv run only there (`depthwise_at`) when it has one."""
    def dense_then_gather():
        return gather_slots(head.spatial_features(features, training=False),
                            indices)

    if not head.ends_in_depthwise:
        return dense_then_gather()
    layer, norm, activation = head.last_depthwise()
    if not (_same_stride_one_depthwise(layer) and layer.activation in (
            None, tf_keras.activations.linear)):
        return dense_then_gather()
    x = head.spatial_features(features, training=False,
                              before_last_depthwise=True)
    with tf.name_scope(layer.name):
        if is_batch_norm(norm):
            kernel, bias = fold_batch_norm(layer, norm)
            return activation(depthwise_at(x, kernel, indices, bias=bias))
        y = depthwise_at(x, layer.depthwise_kernel, indices,
                         bias=layer.bias if layer.use_bias else None)
    return activation(norm(y, training=False))


def sparse_heads(model: tf_keras.Model, images: tf.Tensor, propose=None
                 ) -> dict:
    """The model's inference path computing embeddings only where needed.

    The center-embedding head's output is only read at the K proposal
    cells, so its last depthwise conv runs only at those cells
    (`depthwise_at`) and everything after it, which acts on each pixel
    alone, on K vectors instead of the h x w map;
    the mask-feature head's 1x1 classifier (E x E, bias b) moves to the slot
    side: <m, W f + b> = <W^T m, f> + <m, b>. The same function up to float
    rounding without one dense 7x7 depthwise conv and three of the heads'
    dense 1x1 convolutions. Inference mode only.

    Args:
      model: a single-scale MaskConverModel (`supports_sparse_heads`).
      images: float [B, H, W, 3], normalised.
      propose: class_heatmaps -> dict with 'center_indices' int32 [B, K, 2]
        and 'classes' int32 [B, K] (default `model.propose`; the export
        wraps it in a name scope).

    Returns:
      dict: class_heatmaps float32 [B, h, w, C], mask_logits float32
      [B, h, w, K], and the proposals' entries.
    """
    if not supports_sparse_heads(model):
        raise ValueError('sparse_heads needs 1x1 classifiers and no '
                         'upsampling in the center and mask-feature heads')
    propose = propose or model.propose
    features = model.features(images, False)
    class_heatmaps = tf.cast(model.class_head(features, training=False),
                             tf.float32)
    proposals = propose(class_heatmaps)
    center_head, pixel_head = model.center_head, model.mask_feature_head
    generator = model.mask_embedding_generator
    # Layer name scopes, as `__call__` would open them (op profiles
    # attribute ops to stages by these names).
    with tf.name_scope(center_head.name):
        slots = center_head.pointwise_tail(
            _center_features_at(center_head, features,
                                proposals['center_indices']),
            training=False)
    with tf.name_scope(pixel_head.name):
        pixels = pixel_head.pointwise_tail(
            pixel_head.spatial_features(features, training=False),
            training=False, include_classifier=False)
    with tf.name_scope(generator.name):
        classifier = pixel_head.classifier
        mask_logits = generator.logits_through_linear(
            generator.mlp(slots, proposals['classes']), pixels,
            classifier.kernel, classifier.bias if classifier.use_bias
            else None)
    return {'class_heatmaps': class_heatmaps, 'mask_logits': mask_logits,
            **proposals}
