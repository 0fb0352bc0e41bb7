"""MaskConver losses: center focal loss, mask BCE, dice; float32 math.

Every function casts its inputs to float32 first, so mixed-precision
(float16 / bfloat16) model outputs give float32 losses.

Under a distribution strategy the batch-normalised terms (mask BCE, dice)
all-reduce their sums over the replicas, so the mean of the replicas'
losses is the loss of the global batch and their summed gradients are its
gradient (the task divides each replica's loss by the replica count). One
replica, or no strategy, computes the plain formulas.
"""

import tensorflow as tf

_EPSILON = 1e-7  # Keras' epsilon, as in the reference's dice


def _f32(x):
    return None if x is None else tf.cast(x, tf.float32)


def num_replicas() -> int:
    """Replicas in sync in the current replica context (1 outside one)."""
    ctx = tf.distribute.get_replica_context()
    return 1 if ctx is None else ctx.num_replicas_in_sync


def cross_replica_sum(x):
    """Sum of `x` over the replicas in sync; differentiable.

    The gradient of an all-reduce sum is the all-reduce sum of the
    gradients, so a loss built from these sums has the global-batch gradient
    once the replicas' gradients are summed.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return x
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, x)


def focal_loss(heatmap_logits, heatmap_targets, num_instances, weights=None,
               alpha=2.0, beta=4.0):
    """CenterNet penalty-reduced logistic focal loss.

    p = clip(sigmoid(logits), 1e-4, 1 - 1e-4); per cell and class:
    -(1 - p)^alpha log(p) where target == 1, else
    -(1 - t)^beta p^alpha log(1 - p). Per image: weighted sum / (N_i + 1);
    then the mean over the batch.

    Args:
      heatmap_logits: float [B, h, w, C].
      heatmap_targets: float [B, h, w, C], in [0, 1].
      num_instances: int or float [B], real segments N_i per image.
      weights: float [B, h, w] (e.g. 1 - padding) or None.
      alpha, beta: floats.

    Returns:
      float32 scalar.
    """
    logits, targets = _f32(heatmap_logits), _f32(heatmap_targets)
    p = tf.clip_by_value(tf.sigmoid(logits), 1e-4, 1.0 - 1e-4)
    positive = tf.cast(tf.equal(targets, 1.0), tf.float32)
    pos_loss = (1.0 - p) ** alpha * tf.math.log(p)
    neg_loss = (1.0 - targets) ** beta * p ** alpha * tf.math.log(1.0 - p)
    loss = -(positive * pos_loss + (1.0 - positive) * neg_loss)
    if weights is not None:
        loss *= _f32(weights)[..., tf.newaxis]
    per_image = tf.reduce_sum(loss, axis=[1, 2, 3])
    return tf.reduce_mean(per_image / (_f32(num_instances) + 1.0))


def center_class_loss(heatmap_logits, heatmap_targets, weights=None):
    """Softmax cross-entropy of the class channels at the center cells.

    Not in the reference: the focal loss scores every channel alone, so at
    a center a confusable class can sit just above the right one; this term
    ranks the channels against each other there. A center cell is one with
    some target == 1; its positives are all channels == 1 (a ring and the
    disc in its hole share a cell), loss = logsumexp(all channels) -
    logsumexp(positive channels), the mean over the center cells of the
    global batch (0 without any). A replica returns R * its sum / (global
    count) for R replicas, as `mask_bce_loss`.

    Args:
      heatmap_logits: float [B, h, w, C].
      heatmap_targets: float [B, h, w, C], in [0, 1].
      weights: float [B, h, w] (e.g. 1 - padding) or None.

    Returns:
      float32 scalar.
    """
    logits = _f32(heatmap_logits)
    positive = tf.equal(_f32(heatmap_targets), 1.0)
    center = tf.cast(tf.reduce_any(positive, axis=-1), tf.float32)
    if weights is not None:
        center *= _f32(weights)
    masked = tf.where(positive, logits, tf.float32.min)
    loss = (tf.reduce_logsumexp(logits, axis=-1) -
            tf.reduce_logsumexp(masked, axis=-1))
    count = cross_replica_sum(tf.reduce_sum(center))
    return (num_replicas() * tf.reduce_sum(
        tf.where(center > 0, loss, 0.0) * center) / tf.maximum(count, 1.0))


def _mask_inputs(mask_logits, mask_targets, mask_weights, padding_mask):
    """Resized logits, targets and per-pixel weights, all float32.

    Returns:
      logits: [B, H', W', K] (bilinear resize to the target size);
      targets: [B, H', W', K] with -1 (padding slots) replaced by 0;
      weights: [B, H', W', K] = [gt >= 0] * slot weight * (1 - padding).
    """
    targets = _f32(mask_targets)
    size = tf.shape(targets)[1:3]
    logits = tf.image.resize(_f32(mask_logits), size, method='bilinear')
    weights = (tf.cast(targets >= 0, tf.float32) *
               _f32(mask_weights)[:, tf.newaxis, tf.newaxis, :])
    if padding_mask is not None:
        padding = tf.image.resize(_f32(padding_mask)[..., tf.newaxis], size,
                                  method='nearest')
        weights *= 1.0 - padding
    return logits, tf.maximum(targets, 0.0), weights


def mask_bce_loss(mask_logits, mask_targets, mask_weights, padding_mask=None):
    """Weighted sigmoid binary cross-entropy of the K slot masks.

    loss = sum(weight * BCE) / (sum(weight) + 1) over the whole (global)
    batch, with weight = [gt >= 0] * slot weight * (1 - padding). A replica
    returns R * its sum / (global sum(weight) + 1) for R replicas.

    Args:
      mask_logits: float [B, h, w, K], resized bilinearly to the target size.
      mask_targets: float [B, H', W', K], 0/1 (-1 for padding slots).
      mask_weights: float [B, K].
      padding_mask: float [B, H, W] (1 = padded), nearest-resized to
        [H', W'], or None.

    Returns:
      float32 scalar.
    """
    logits, targets, weights = _mask_inputs(mask_logits, mask_targets,
                                            mask_weights, padding_mask)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    normaliser = cross_replica_sum(tf.reduce_sum(weights)) + 1.0
    return num_replicas() * tf.reduce_sum(bce * weights) / normaliser


def dice_loss(mask_logits, mask_targets, mask_weights, padding_mask=None,
              mode='global'):
    """Dice loss of the K slot masks.

    With p = sigmoid(logits) * weight and g = gt * weight (weight as in
    `mask_bce_loss`), I = sum(p * g), U = sum(p + g):
    - 'global' (the reference's adaptive dice): I and U over all masks and
      pixels of the batch, d = 2I / (U + 1e-7), loss = 1 - d * e^(1 - d);
      0 if U == 0 (nothing to compare).
    - 'per_mask': d_k = 2 I_k / (U_k + 1e-7) per (image, slot); loss = mean of
      (1 - d_k) over the slots with slot weight > 0 and U_k > 0 (0 if none).
    Sums and counts are over the global batch (see the module docstring).

    Args:
      mask_logits, mask_targets, mask_weights, padding_mask: as in
        `mask_bce_loss`.
      mode: 'global' or 'per_mask'.

    Returns:
      float32 scalar.
    """
    if mode not in ('global', 'per_mask'):
        raise ValueError(f"dice mode must be 'global' or 'per_mask', got {mode!r}")
    logits, targets, weights = _mask_inputs(mask_logits, mask_targets,
                                            mask_weights, padding_mask)
    pred = tf.sigmoid(logits) * weights
    gt = targets * weights
    if mode == 'global':
        intersection, union = tf.unstack(cross_replica_sum(
            tf.stack([tf.reduce_sum(pred * gt), tf.reduce_sum(pred + gt)])))
        dice = 2.0 * intersection / (union + _EPSILON)
        return tf.where(union > 0, 1.0 - dice * tf.exp(1.0 - dice), 0.0)
    intersection = tf.reduce_sum(pred * gt, axis=[1, 2])
    union = tf.reduce_sum(pred + gt, axis=[1, 2])
    dice = 2.0 * intersection / (union + _EPSILON)
    valid = tf.cast(tf.logical_and(_f32(mask_weights) > 0, union > 0),
                    tf.float32)
    count = cross_replica_sum(tf.reduce_sum(valid))
    return (num_replicas() * tf.reduce_sum((1.0 - dice) * valid) /
            tf.maximum(count, 1.0))


def effective_dice_weight(mask_weight, dice_weight=None) -> float:
    """The dice weight a config means: None = mask_weight (the reference)."""
    return float(mask_weight if dice_weight is None else dice_weight)


def maskconver_losses(class_heatmaps, mask_logits, labels, focal_alpha=2.0,
                      focal_beta=4.0, mask_weight=5.0, dice_weight=None,
                      dice_mode='global', center_weight=1.0,
                      class_weight=0.0):
    """The MaskConver loss components and their sum (no L2, no loss_weight).

    total = center_weight * center + class_weight * class + mask_weight *
    BCE + dice_weight * dice (dice_weight defaults to mask_weight,
    center_weight to 1 and class_weight to 0, as the reference; class is
    `center_class_loss`). The center loss's per-pixel weight is
    1 - padding_mask nearest-resized to the heatmap grid. The caller adds the
    L2 terms (model.losses) and the overall loss_weight.

    Args:
      class_heatmaps: float [B, h, w, C], center heatmap logits.
      mask_logits: float [B, h', w', K].
      labels: dict of batched parser labels: `heatmaps` [B, h, w, C],
        `num_instances` [B], `masks` [B, H', W', K], `mask_weights` [B, K],
        `padding_mask` [B, H, W].
      focal_alpha, focal_beta: focal loss exponents.
      mask_weight: float, BCE weight.
      center_weight: float, center (focal) loss weight.
      class_weight: float, `center_class_loss` weight (0: not computed).
      dice_weight: float or None (= mask_weight).
      dice_mode: 'global' or 'per_mask' (see `dice_loss`).

    Returns:
      dict of float32 scalars: center_loss, mask_bce_loss, mask_dice_loss,
      total_loss, and center_class_loss when class_weight > 0.
    """
    dice_weight = effective_dice_weight(mask_weight, dice_weight)
    padding = _f32(labels['padding_mask'])
    grid = tf.shape(class_heatmaps)[1:3]
    center_weights = 1.0 - tf.image.resize(
        padding[..., tf.newaxis], grid, method='nearest')[..., 0]
    center = focal_loss(class_heatmaps, labels['heatmaps'],
                        labels['num_instances'], center_weights, focal_alpha,
                        focal_beta)
    mask_args = (mask_logits, labels['masks'], labels['mask_weights'], padding)
    bce = mask_bce_loss(*mask_args)
    dice = dice_loss(*mask_args, mode=dice_mode)
    total = center_weight * center + mask_weight * bce + dice_weight * dice
    out = {'center_loss': center, 'mask_bce_loss': bce,
           'mask_dice_loss': dice}
    if class_weight:
        out['center_class_loss'] = center_class_loss(
            class_heatmaps, labels['heatmaps'], center_weights)
        total += class_weight * out['center_class_loss']
    return {**out, 'total_loss': total}
