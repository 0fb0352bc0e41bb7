"""Multi-scale MaskConver task config and its registered experiments.

`MultiScaleMaskConverTask` is the single-scale task config with a
`MultiScaleMaskConverModel` and a parser that adds the FPN level ranges,
the stuff-center policy and copy-paste. Experiments:
- `maskconver_r50_convnext_unet_coco`: the reference
  `multiscale_maskconver_resnetufpn_coco` row by row
  (`../shared/design/reference_flagship.md`): ResNet-50 ConvNeXt-UNet
  (`resnet_unet`, frozen BN, stochastic depth 0.1) + `maskconver_fpn`
  (concat, separable 7x7, LayerNorm) levels 3-7, pyramid-fused mask features
  at stride 4; 1280 px, batch 128, 270k steps, AdamW (decay 0.05 on kernels
  only), cosine 1e-3, 500 warmup steps, gradient clip norm 1.0, EMA 0.99996
  on all weights, photometric AutoAugment, copy-paste, K 256, mask weight 10.
- `maskconver_r50_convnext_unet_shapes`: the same network on the built-in
  shapes set at 128 px, sized for 2 CPU cores (as `maskconver_shapes` is for
  the mobile model).
"""

import dataclasses
from typing import List

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import optimization

from maskconver_tf.configs import maskconver as model_cfg
from maskconver_tf.configs import maskconver_task as task_cfg

COCO_VAL_EXAMPLES = 5000


@dataclasses.dataclass
class MultiScaleParser(task_cfg.Parser):
    """Single-scale parser settings plus the multi-scale ones.

    fpn_low_range / fpn_high_range: per FPN level (min_level first), the
      inclusive range of box half-diagonals (input pixels) whose centers go
      to that level.
    stuff_centers: 'class' (one center per stuff class at its centroid, the
      reference) or 'components' (the single-scale connected-component
      policy with max_num_stuff_centers / min_stuff_area / stuff_dilation).
    copypaste_frequency: probability of pasting each thing instance and each
      stuff class of a second training image (0 = copy-paste off).
    copypaste_aug_scale_min / max: scale jitter of the pasted image.
    copypaste_shuffle_buffer_size: shuffle buffer of the second stream
      (decoded images: memory grows with it).
    center_type: 'centroid' (mask centroids, the multi-scale reference) or
      'box'.
    """
    center_type: str = 'centroid'
    fpn_low_range: List[float] = dataclasses.field(
        default_factory=lambda: [0.0, 100.0, 200.0, 400.0, 800.0])
    fpn_high_range: List[float] = dataclasses.field(
        default_factory=lambda: [100.0, 200.0, 400.0, 800.0, 12.5e6])
    stuff_centers: str = 'class'
    copypaste_frequency: float = 0.0
    copypaste_aug_scale_min: float = 1.0
    copypaste_aug_scale_max: float = 1.0
    copypaste_shuffle_buffer_size: int = 1000


@dataclasses.dataclass
class MultiScaleDataConfig(task_cfg.DataConfig):
    parser: MultiScaleParser = dataclasses.field(
        default_factory=MultiScaleParser)


@dataclasses.dataclass
class MultiScaleMaskConverTask(task_cfg.MaskConverTask):
    """The multi-scale MaskConver task (fields as `MaskConverTask`)."""
    model: model_cfg.MultiScaleMaskConverModel = dataclasses.field(
        default_factory=model_cfg.MultiScaleMaskConverModel)
    train_data: MultiScaleDataConfig = dataclasses.field(
        default_factory=lambda: MultiScaleDataConfig(is_training=True))
    validation_data: MultiScaleDataConfig = dataclasses.field(
        default_factory=lambda: MultiScaleDataConfig(is_training=False,
                                                     drop_remainder=False))


# Decay the kernels and nothing else (every other name matches the exclude).
ADAMW_INCLUDE_IN_WEIGHT_DECAY = [r'.*(kernel|weight):0$']
ADAMW_EXCLUDE_FROM_WEIGHT_DECAY = ['.*']


def _adamw_cosine(learning_rate, decay_steps, warmup_steps, weight_decay,
                  clipnorm, ema_decay=None):
    """AdamW (decay on kernels only) + cosine + linear warmup (+ EMA)."""
    config = {
        'optimizer': {'type': 'adamw', 'adamw': {
            'weight_decay_rate': weight_decay,
            'include_in_weight_decay': ADAMW_INCLUDE_IN_WEIGHT_DECAY,
            'exclude_from_weight_decay': ADAMW_EXCLUDE_FROM_WEIGHT_DECAY,
            'beta_1': 0.9, 'beta_2': 0.999, 'epsilon': 1e-7,
            'gradient_clip_norm': clipnorm}},
        'learning_rate': {'type': 'cosine', 'cosine': {
            'initial_learning_rate': learning_rate,
            'decay_steps': decay_steps}},
        'warmup': {'type': 'linear', 'linear': {
            'warmup_steps': warmup_steps, 'warmup_learning_rate': 0.0}},
    }
    if ema_decay:
        config['ema'] = {'average_decay': ema_decay,
                         'trainable_weights_only': False}
    return optimization.OptimizationConfig(config)


def _restrictions():
    return ['task.train_data.is_training != None',
            'task.validation_data.is_training != None']


@exp_factory.register_config_factory('maskconver_r50_convnext_unet_coco')
def maskconver_r50_convnext_unet_coco() -> cfg.ExperimentConfig:
    """The paper's multi-scale ResNet-50 ConvNeXt-UNet MaskConver on COCO."""
    image_size, train_batch, eval_batch, steps = 1280, 128, 16, 270000
    model = model_cfg.maskconver_r50_convnext_unet_coco(image_size)
    # COCO images are at most 640 px: predictions on a 640 canvas.
    model.panoptic_generator.output_size = [640, 640]
    train_parser = MultiScaleParser(
        aug_scale_min=0.05, aug_scale_max=2.9, gaussian_iou=0.7,
        aug_type='panoptic_deeplab_policy', mask_target_stride=2,
        copypaste_frequency=0.5, copypaste_aug_scale_min=0.025,
        copypaste_aug_scale_max=1.5)
    eval_parser = MultiScaleParser(
        aug_rand_hflip=False, gaussian_iou=0.7, mask_target_stride=2,
        segmentation_groundtruth_padded_size=[640, 640])
    return cfg.ExperimentConfig(
        runtime=cfg.RuntimeConfig(mixed_precision_dtype='float32'),
        task=MultiScaleMaskConverTask(
            dataset='coco', model=model,
            train_data=MultiScaleDataConfig(
                input_path='coco/tfrecords/train-nocrowd*', is_training=True,
                global_batch_size=train_batch, parser=train_parser,
                shuffle_buffer_size=10000),
            validation_data=MultiScaleDataConfig(
                input_path='coco/tfrecords/val-nocrowd*', is_training=False,
                global_batch_size=eval_batch, drop_remainder=False,
                parser=eval_parser),
            # AdamW's decoupled decay replaces the L2 regulariser.
            losses=task_cfg.Losses(mask_weight=10.0, dice_weight=10.0,
                                  l2_weight_decay=0.0)),
        trainer=cfg.TrainerConfig(
            train_steps=steps,
            # 312 x 16 = 4992 of the 5000 val images, as the reference.
            validation_steps=COCO_VAL_EXAMPLES // eval_batch,
            validation_interval=308, steps_per_loop=25,
            summary_interval=100, checkpoint_interval=1000, max_to_keep=5,
            best_checkpoint_export_subdir='best_ckpt',
            best_checkpoint_eval_metric='panoptic_quality/All_pq',
            best_checkpoint_metric_comp='higher',
            optimizer_config=_adamw_cosine(
                1e-3, steps, 500, weight_decay=0.05, clipnorm=1.0,
                ema_decay=0.99996)),
        restrictions=_restrictions())


@exp_factory.register_config_factory('maskconver_r50_convnext_unet_shapes')
def maskconver_r50_convnext_unet_shapes() -> cfg.ExperimentConfig:
    """The flagship network on the built-in shapes set, CPU-sized (128 px).

    Only the class channels change in the network; the recipe is what a
    from-scratch run on 2 CPU cores needs (see
    experiments/maskconver_r50_convnext_unet_shapes.yaml).
    """
    # 240 steps: the wall-clock of `make demo`'s 1400 mobile steps (4.0 s vs
    # 0.65 s a step at batch 16 on 2 AVX-512 cores, benchmarks/RESULTS.md).
    image_size, train_batch, eval_batch, steps = 128, 16, 16, 240
    model = model_cfg.maskconver_r50_convnext_unet_coco(image_size)
    model.num_classes = 8
    model.num_instances = 20
    model.panoptic_generator.output_size = [image_size, image_size]
    # From scratch: no pre-trained statistics to freeze, one replica.
    model.backbone.resnet_unet.bn_trainable = True
    model.norm_activation.use_sync_bn = False
    model.norm_activation.norm_momentum = 0.95
    # The reference ranges (half-diagonals at 1280 px) scaled to 128 px.
    ranges = dict(fpn_low_range=[0.0, 10.0, 20.0, 40.0, 80.0],
                  fpn_high_range=[10.0, 20.0, 40.0, 80.0, 1.25e6])
    train_parser = MultiScaleParser(
        aug_scale_min=0.75, aug_scale_max=1.25, gaussian_iou=0.7,
        mask_target_stride=2, **ranges)
    eval_parser = MultiScaleParser(aug_rand_hflip=False, gaussian_iou=0.7,
                                   mask_target_stride=2, **ranges)
    return cfg.ExperimentConfig(
        runtime=cfg.RuntimeConfig(mixed_precision_dtype='float32'),
        task=MultiScaleMaskConverTask(
            dataset='shapes', model=model, init_checkpoint_modules='all',
            train_data=MultiScaleDataConfig(
                input_path='shapes/tfrecords/train*', is_training=True,
                global_batch_size=train_batch, parser=train_parser),
            validation_data=MultiScaleDataConfig(
                input_path='shapes/tfrecords/val*', is_training=False,
                global_batch_size=eval_batch, drop_remainder=False,
                parser=eval_parser),
            losses=task_cfg.Losses(mask_weight=5.0, dice_weight=1.0,
                                   l2_weight_decay=0.0)),
        trainer=cfg.TrainerConfig(
            train_steps=steps, validation_steps=-1,
            validation_interval=steps, steps_per_loop=40, summary_interval=40,
            checkpoint_interval=120, max_to_keep=3,
            # EMA 0.99996 averages over ~25k steps: useless in a few hundred.
            optimizer_config=_adamw_cosine(
                1e-3, steps, 30, weight_decay=0.05, clipnorm=1.0)),
        restrictions=_restrictions())
