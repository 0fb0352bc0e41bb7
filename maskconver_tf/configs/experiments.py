"""Experiments registered with Model Garden's `exp_factory`.

Each has a YAML in `experiments/` that says what it reproduces:
- maskconver_mobilenet_mh_coco: the published mobile recipe (reference
  section 5): MobileNet-MH + ASPP + 3 heads, SGD 0.9, cosine 0.04, 2000 warmup
  steps, 500k steps at batch 64, scale jitter 0.1-1.9.
- maskconver_mobilenetv4_conv_small_coco / _conv_medium_coco: the same
  recipe, ASPP and heads on Model Garden's MobileNetV4-Conv-S / -M trunks
  (output stride 16) instead of MobileNet-MH (issue #17).
- maskconver_shapes: the same network on the built-in shapes set, sized for
  2 CPU cores. The base that tests and tools build on (K 50 and full-size
  mask targets, as the COCO model). `make demo` trains it with
  experiments/maskconver_shapes.yaml, the measured recipe, which sets K 20,
  training mask targets at stride 2, 650 steps validated at the end, dice
  per mask, the center class loss and duplicate suppression in the merge
  (tests/test_task.py pins exactly these differences), then at 256 px with
  experiments/maskconver_shapes_256_finetune.yaml on top.
"""

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import optimization

from maskconver_tf.configs import maskconver as model_cfg
from maskconver_tf.configs import maskconver_task as task_cfg

COCO_TRAIN_EXAMPLES = 118287
COCO_VAL_EXAMPLES = 5000


def _optimization(optimizer, learning_rate, decay_steps, warmup_steps,
                  weight_decay=None, clipnorm=None):
    opt = {'type': optimizer}
    if optimizer == 'sgd':
        opt['sgd'] = {'momentum': 0.9}
    elif optimizer == 'adam':
        opt['adam'] = {}
    elif optimizer == 'adamw':
        opt['adamw'] = {'weight_decay_rate': weight_decay or 0.0,
                        'exclude_from_weight_decay': ['LayerNorm', 'layer_norm',
                                                      'bias', 'beta', 'gamma'],
                        'gradient_clip_norm': clipnorm or 0.0}
    else:
        raise ValueError(f'optimizer {optimizer!r} not used by our recipes')
    return optimization.OptimizationConfig({
        'optimizer': opt,
        'learning_rate': {'type': 'cosine', 'cosine': {
            'initial_learning_rate': learning_rate, 'decay_steps': decay_steps}},
        'warmup': {'type': 'linear', 'linear': {
            'warmup_steps': warmup_steps, 'warmup_learning_rate': 0.0}},
    })


def _mobile_coco(preset: str) -> cfg.ExperimentConfig:
    """The reference mobile COCO recipe around mobile model preset `preset`.

    The MobileNet-MH and MobileNetV4 experiments differ only in the
    backbone's model_id, so they share this one recipe.
    """
    image_size = 640
    train_batch, eval_batch, steps = 64, 8, 500000
    model = model_cfg.model_config_for(preset, image_size)
    model.panoptic_generator.output_size = [640, 640]
    parser = task_cfg.Parser(aug_scale_min=0.1, aug_scale_max=1.9,
                             gaussian_iou=0.7, max_num_stuff_centers=1,
                             min_stuff_area=1024,
                             segmentation_groundtruth_padded_size=[640, 640])
    return cfg.ExperimentConfig(
        runtime=cfg.RuntimeConfig(mixed_precision_dtype='float32'),
        task=task_cfg.MaskConverTask(
            dataset='coco', model=model,
            train_data=task_cfg.DataConfig(
                input_path='coco/tfrecords/train-nocrowd*', is_training=True,
                global_batch_size=train_batch, parser=parser,
                shuffle_buffer_size=10000),
            validation_data=task_cfg.DataConfig(
                input_path='coco/tfrecords/val-nocrowd*', is_training=False,
                global_batch_size=eval_batch, drop_remainder=False,
                parser=parser),
            losses=task_cfg.Losses(mask_weight=5.0, l2_weight_decay=1e-5)),
        trainer=cfg.TrainerConfig(
            train_steps=steps,
            validation_steps=COCO_VAL_EXAMPLES // eval_batch,
            validation_interval=2000, steps_per_loop=2000,
            summary_interval=2000, checkpoint_interval=2000,
            optimizer_config=_optimization('sgd', 0.04, steps, 2000)),
        restrictions=['task.train_data.is_training != None',
                      'task.validation_data.is_training != None'])


@exp_factory.register_config_factory('maskconver_mobilenet_mh_coco')
def maskconver_mobilenet_mh_coco() -> cfg.ExperimentConfig:
    """Reference mobile MaskConver on COCO panoptic (640 px; 256 via YAML)."""
    return _mobile_coco('maskconver_mobilenet_mh_coco')


@exp_factory.register_config_factory('maskconver_mobilenetv4_conv_small_coco')
def maskconver_mobilenetv4_conv_small_coco() -> cfg.ExperimentConfig:
    """The mobile recipe on a MobileNetV4-Conv-Small trunk (640 px)."""
    return _mobile_coco('maskconver_mobilenetv4_conv_small_coco')


@exp_factory.register_config_factory('maskconver_mobilenetv4_conv_medium_coco')
def maskconver_mobilenetv4_conv_medium_coco() -> cfg.ExperimentConfig:
    """The mobile recipe on a MobileNetV4-Conv-Medium trunk (640 px)."""
    return _mobile_coco('maskconver_mobilenetv4_conv_medium_coco')


@exp_factory.register_config_factory('maskconver_shapes')
def maskconver_shapes() -> cfg.ExperimentConfig:
    """The reference mobile network on the built-in shapes set, CPU-sized.

    The base of the `make demo` recipe (experiments/maskconver_shapes.yaml),
    not the recipe itself: see the module docstring.
    """
    image_size, train_batch, eval_batch, steps = 128, 16, 16, 1500
    model = model_cfg.maskconver_shapes(image_size)
    model.panoptic_generator.output_size = [image_size, image_size]
    model.panoptic_generator.small_area_threshold = 16
    # Moving statistics must converge within ~1500 steps (0.99 does not).
    model.norm_activation.norm_momentum = 0.95
    parser = task_cfg.Parser(aug_scale_min=0.75, aug_scale_max=1.25,
                             gaussian_iou=0.7, max_num_stuff_centers=1,
                             min_stuff_area=64)
    eval_parser = task_cfg.Parser(aug_rand_hflip=False, gaussian_iou=0.7,
                                  max_num_stuff_centers=1, min_stuff_area=64)
    return cfg.ExperimentConfig(
        runtime=cfg.RuntimeConfig(mixed_precision_dtype='float32'),
        task=task_cfg.MaskConverTask(
            dataset='shapes', model=model,
            train_data=task_cfg.DataConfig(
                input_path='shapes/tfrecords/train*', is_training=True,
                global_batch_size=train_batch, parser=parser),
            validation_data=task_cfg.DataConfig(
                input_path='shapes/tfrecords/val*', is_training=False,
                global_batch_size=eval_batch, drop_remainder=False,
                parser=eval_parser),
            # Tuned with dice weight 1 (not mask_weight) on this set.
            losses=task_cfg.Losses(mask_weight=5.0, dice_weight=1.0,
                                   l2_weight_decay=1e-5)),
        trainer=cfg.TrainerConfig(
            train_steps=steps, validation_steps=-1,
            validation_interval=500, steps_per_loop=50, summary_interval=50,
            checkpoint_interval=250, max_to_keep=3,
            optimizer_config=_optimization('adam', 2e-3, steps, 100)),
        restrictions=['task.train_data.is_training != None',
                      'task.validation_data.is_training != None'])
