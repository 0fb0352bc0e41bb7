"""Task, data, loss and evaluation configs of the MaskConver training task.

The model configs live in `configs/maskconver.py`; experiments (task +
trainer + runtime) are registered in `configs/experiments.py`.
"""

import dataclasses
from typing import List, Optional, Union

from official.core import config_definitions as cfg
from official.modeling import hyperparams

from maskconver_tf.configs import maskconver as model_cfg


@dataclasses.dataclass
class DataDecoder(hyperparams.Config):
    """How records are decoded.

    type: 'tfrecord' (Model Garden panoptic TFRecords written by
      `maskconver_tf.data.create_tfrecords`) or 'tfds' (`coco/2017_panoptic`
      from a prepared `tfds_data_dir`; set `tfds_name` on the data config).
    skip_crowd: tfds only: crowd segments become void, as `--skip_crowd` does
      for TFRecords.
    """
    type: str = 'tfrecord'
    panoptic_category_mask_key: str = 'image/panoptic/category_mask'
    panoptic_instance_mask_key: str = 'image/panoptic/instance_mask'
    skip_crowd: bool = True


@dataclasses.dataclass
class Parser(hyperparams.Config):
    """Augmentation and target settings (reference section 2 and 3).

    min_stuff_area: pixels at input resolution a stuff component needs to get
      a center (the reference's 1024 is tuned for 256-640 px COCO inputs).
    stuff_dilation: side of the square dilation before stuff connected
      components (the reference applies three 21x21 max-pools = 61).
    mask_target_stride: mask targets at input resolution / stride (1 = the
      reference); larger values save memory at large inputs.
    segmentation_groundtruth_padded_size: eval ground truth is kept at the
      original resolution and zero-padded to this size ([] = the padded
      input size; a larger original image is refused with a message).
    """
    aug_rand_hflip: bool = True
    aug_scale_min: float = 1.0
    aug_scale_max: float = 1.0
    aug_type: Optional[str] = None
    gaussian_iou: float = 0.7
    max_num_stuff_centers: int = 1
    min_stuff_area: int = 1024
    stuff_dilation: int = 61
    center_type: str = 'box'
    mask_target_stride: int = 1
    segmentation_groundtruth_padded_size: List[int] = dataclasses.field(
        default_factory=list)
    dtype: str = 'float32'


@dataclasses.dataclass
class DataConfig(cfg.DataConfig):
    """Input config for training and evaluation."""
    input_path: Union[str, List[str]] = ''
    global_batch_size: int = 0
    is_training: bool = False
    dtype: str = 'float32'
    shuffle_buffer_size: int = 1000
    file_type: str = 'tfrecord'
    drop_remainder: bool = True
    decoder: DataDecoder = dataclasses.field(default_factory=DataDecoder)
    parser: Parser = dataclasses.field(default_factory=Parser)


@dataclasses.dataclass
class Losses(hyperparams.Config):
    """Loss weights (reference section 2.4).

    center_weight: the center (class heatmap) focal loss weight (the
      reference: 1).
    class_weight: weight of `losses.center_class_loss`, a softmax over the
      class channels at the center cells (not in the reference: 0).
    dice_weight: None = mask_weight (the reference: total = center +
      mask_weight * (BCE + dice)); a float sets the dice weight alone.
    dice_mode: 'global' (the reference's one dice over all masks of the batch)
      or 'per_mask' (mean over real slots).
    l2_weight_decay: applied as Keras L2 with coefficient wd / 2, as Model
      Garden does (tf.nn.l2_loss convention).
    """
    focal_alpha: float = 2.0
    focal_beta: float = 4.0
    center_weight: float = 1.0
    class_weight: float = 0.0
    mask_weight: float = 5.0
    dice_weight: Optional[float] = None
    dice_mode: str = 'global'
    l2_weight_decay: float = 1e-5
    loss_weight: float = 1.0


@dataclasses.dataclass
class Evaluation(hyperparams.Config):
    """In-loop PQ with Model Garden's PanopticQualityEvaluator.

    The in-loop number treats crowd as the TFRecords encode it (void with
    `--skip_crowd`); the official number comes from `maskconver_tf.evaluate`.
    """
    ignored_label: int = 0
    max_instances_per_category: int = 256
    offset: int = 256 * 256 * 256
    rescale_predictions: bool = True
    report_per_class_pq: bool = False


@dataclasses.dataclass
class MaskConverTask(cfg.TaskConfig):
    """The single-scale MaskConver task.

    dataset: 'coco', 'shapes' or a path to a COCO panoptic / categories JSON:
      the descriptor every id <-> channel mapping comes from; its
      num_classes must equal model.num_classes.
    label_mode: 'raw' or 'contiguous'; None = the descriptor's default
      (raw for 'coco', as the reference's 201 channels; contiguous otherwise).
    init_checkpoint_modules: 'all' or a list of 'backbone', 'decoder'.
    """
    dataset: str = 'coco'
    label_mode: Optional[str] = None
    model: model_cfg.MaskConverModel = dataclasses.field(
        default_factory=model_cfg.MaskConverModel)
    train_data: DataConfig = dataclasses.field(
        default_factory=lambda: DataConfig(is_training=True))
    validation_data: DataConfig = dataclasses.field(
        default_factory=lambda: DataConfig(is_training=False,
                                           drop_remainder=False))
    losses: Losses = dataclasses.field(default_factory=Losses)
    evaluation: Evaluation = dataclasses.field(default_factory=Evaluation)
    init_checkpoint: Optional[str] = None
    init_checkpoint_modules: Union[str, List[str]] = 'all'
