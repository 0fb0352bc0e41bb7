"""The multi-scale MaskConver task (`MultiScaleMaskConverTask` config).

Same model building, checkpoint restoring, train / validation steps and PQ
evaluation as the single-scale `MaskConverTask`; differs in the parser
(multi-scale targets, copy-paste through the input reader's `sample_fn`) and
the center loss on the flattened level grids.

Losses (reference section 7.1):
- center: CenterNet focal loss over all levels' cells [B, N, C], weight
  1 - padding per cell; summed over the batch and divided by (the number of
  real slots in the global batch / replicas + 1), the reference's
  normalisation (all-reduced across replicas inside a replica context).
- mask BCE and dice: the single-scale functions (dice per
  `losses.dice_mode`). The BCE approximates the reference's: ours is
  sum(weighted BCE) / (sum(weights) + 1), the reference's the per-slot pixel
  means summed over slots / (slot count + 1). With N real slots sharing P
  valid pixels that is S / (N P + 1) against S / (P (N + 1)): ours is
  larger by (N + 1) P / (N P + 1), about 1 + 1/N (1.1x at 10 slots per
  batch, 2x at one).
- total = (center + mask_weight * BCE + dice_weight * dice) * loss_weight
  + L2 (dice_weight None = mask_weight; the reference experiment: 10).
"""

from typing import Any, Dict, Mapping, Optional

import tensorflow as tf

from official.core import task_factory

from maskconver_tf.configs import multiscale_maskconver_task as ms_cfg
from maskconver_tf.dataloaders import multiscale_maskconver_input
from maskconver_tf.losses import maskconver_losses
from maskconver_tf.ops import multiscale_targets
from maskconver_tf.tasks import maskconver


def global_instance_count(num_instances):
    """Real slots of the global batch / replicas (reference normaliser).

    Args:
      num_instances: int or float [B], real slots per image of this replica.

    Returns:
      float32 scalar.
    """
    count = tf.reduce_sum(tf.cast(num_instances, tf.float32))
    return (maskconver_losses.cross_replica_sum(count) /
            maskconver_losses.num_replicas())


def multiscale_center_loss(class_heatmaps, heatmap_targets, num_instances,
                           padding_mask, min_level, max_level, alpha=2.0,
                           beta=4.0):
    """Focal loss over the concatenated level grids.

    Args:
      class_heatmaps: float [B, N, C] logits.
      heatmap_targets: float [B, N, C].
      num_instances: [B] real slots per image.
      padding_mask: float [B, H, W] (1 = padded).
      min_level, max_level: ints.
      alpha, beta: focal exponents.

    Returns:
      float32 scalar: sum over the batch / (global count per replica + 1).
    """
    weights = multiscale_targets.flatten_level_weights(padding_mask,
                                                       min_level, max_level)
    batch = tf.cast(tf.shape(class_heatmaps)[0], tf.float32)
    # With zero instances focal_loss is the batch mean of per-image sums.
    mean_sum = maskconver_losses.focal_loss(
        class_heatmaps[:, :, tf.newaxis], heatmap_targets[:, :, tf.newaxis],
        tf.zeros_like(tf.cast(num_instances, tf.float32)),
        weights[:, :, tf.newaxis], alpha, beta)
    return mean_sum * batch / (global_instance_count(num_instances) + 1.0)


@task_factory.register_task_cls(ms_cfg.MultiScaleMaskConverTask)
class MultiScaleMaskConverTask(maskconver.MaskConverTask):
    """Multi-scale MaskConver on Model Garden's task API."""

    def build_parser(self, params: ms_cfg.MultiScaleDataConfig):
        model_config = self.task_config.model
        p = params.parser
        return multiscale_maskconver_input.Parser(
            min_level=model_config.min_level,
            max_level=model_config.max_level,
            fpn_low_range=list(p.fpn_low_range),
            fpn_high_range=list(p.fpn_high_range),
            stuff_centers=p.stuff_centers,
            copypaste_frequency=p.copypaste_frequency,
            copypaste_aug_scale_min=p.copypaste_aug_scale_min,
            copypaste_aug_scale_max=p.copypaste_aug_scale_max,
            **self.parser_kwargs(params))

    def build_sample_fn(self, params: ms_cfg.MultiScaleDataConfig):
        """Copy-paste pairs each training sample with a shuffled second one."""
        p = params.parser
        if params.is_training and p.copypaste_frequency > 0:
            return multiscale_maskconver_input.copy_paste_sample_fn(
                p.copypaste_shuffle_buffer_size, seed=params.seed)
        return None

    def build_losses(self, labels: Mapping[str, tf.Tensor],
                     model_outputs: Mapping[str, tf.Tensor],
                     aux_losses: Optional[Any] = None) -> Dict[str, tf.Tensor]:
        """Returns a dict of scalar float32 losses; `total_loss` is trained."""
        c = self.task_config.losses
        m = self.task_config.model
        if c.class_weight:
            raise ValueError(
                f'task.losses.class_weight is {c.class_weight}; the '
                'multi-scale task has no center class loss (expected 0)')
        center = multiscale_center_loss(
            model_outputs['class_heatmaps'], labels['heatmaps'],
            labels['num_instances'], labels['padding_mask'], m.min_level,
            m.max_level, c.focal_alpha, c.focal_beta)
        mask_args = (model_outputs['mask_logits'], labels['masks'],
                     labels['mask_weights'], labels['padding_mask'])
        bce = maskconver_losses.mask_bce_loss(*mask_args)
        dice = maskconver_losses.dice_loss(*mask_args, mode=c.dice_mode)
        dice_weight = maskconver_losses.effective_dice_weight(c.mask_weight,
                                                              c.dice_weight)
        model_loss = c.loss_weight * (c.center_weight * center +
                                      c.mask_weight * bce + dice_weight * dice)
        l2_loss = (tf.add_n([tf.cast(x, tf.float32) for x in aux_losses])
                   if aux_losses else tf.constant(0.0))
        return {
            'total_loss': model_loss + l2_loss,
            'model_loss': model_loss,
            'center_loss': center,
            'center_class_loss': tf.constant(0.0),
            'mask_bce_loss': bce,
            'mask_dice_loss': dice,
            'l2_loss': l2_loss,
        }
