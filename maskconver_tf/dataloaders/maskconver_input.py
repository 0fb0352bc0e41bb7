"""MaskConver input parser: augmentation, resize / crop / pad and targets.

Input: the decoder's dict, `image` uint8 [H, W, 3], `category_mask` int32
[H, W] (dataset category ids, 0 void), `instance_mask` int32 [H, W] (thing
instance ids, 0 none), `source_id` string, `height`, `width`.

Output: (image [Hp, Wp, 3] of `dtype`, labels) with static shapes, where
(Hp, Wp) is `output_size` rounded up to a multiple of 2^max(level, max_level).
Labels (see `maskconver_tf.ops.target_ops.build_targets` for the target
policies):
  heatmaps float32 [Hp / 2^level, Wp / 2^level, C]; classes int32 [K]
  (channels, -1 padding); masks float32 [Hp / s, Wp / s, K] (0/1, -1 for
  padding slots); mask_weights float32 [K]; center_indices int32 [K, 2]
  (y, x); num_instances, num_dropped_segments int32 []; padding_mask float32
  [Hp, Wp] (1 = padded); image_info float32 [4, 2] ([[orig h, w],
  [desired h, w], [scale y, x], [offset y, x]], Model Garden's convention).
Eval adds groundtruth_category_mask / groundtruth_instance_mask int32 at
original resolution (dataset ids) zero-padded to
`segmentation_groundtruth_padded_size`, and source_id.
"""

import numpy as np
import tensorflow as tf
from official.vision.dataloaders import parser
from official.vision.ops import augment
from official.vision.ops import preprocess_ops

from maskconver_tf.ops import preprocess
from maskconver_tf.ops import target_ops

# AutoAugment ops that move pixels would misalign the masks.
_PHOTOMETRIC_OPS = frozenset([
    'AutoContrast', 'Equalize', 'Invert', 'Posterize', 'Solarize',
    'SolarizeAdd', 'Color', 'Contrast', 'Brightness', 'Sharpness',
    'Grayscale', 'Gaussian_Noise'])


def _resize_crop_pad_labels(labels, image_info, output_size, padded_size):
    """Applies the image's resize / crop / pad to label maps (nearest).

    Model Garden's `resize_and_crop_masks` truncates the scaled size, which
    can be one pixel short of the image's rounded size; this rounds alike.

    Args:
      labels: int32 [H, W, n].
      image_info: float32 [4, 2] of `resize_and_crop_image`.
      output_size: [h, w] ints, the desired size (crop window).
      padded_size: [Hp, Wp] ints.

    Returns:
      int32 [Hp, Wp, n], 0 in the padded area.
    """
    scaled_size = tf.cast(tf.round(image_info[0] * image_info[2]), tf.int32)
    offset = tf.cast(image_info[3], tf.int32)
    labels = tf.image.resize(labels, scaled_size, method='nearest')
    labels = labels[offset[0]:offset[0] + output_size[0],
                    offset[1]:offset[1] + output_size[1]]
    labels = tf.image.pad_to_bounding_box(labels, 0, 0, padded_size[0],
                                          padded_size[1])
    return tf.ensure_shape(labels, [padded_size[0], padded_size[1],
                                    labels.shape[-1]])


class Parser(parser.Parser):
    """Parses decoded panoptic examples into MaskConver inputs and targets."""

    def __init__(self, output_size, num_classes, id_to_channel,
                 is_thing_channel, level=3, num_instances=50, gaussian_iou=0.7,
                 max_num_stuff_centers=1, min_stuff_area=1024,
                 stuff_dilation=61, center_type='box', mask_target_stride=1,
                 aug_rand_hflip=True, aug_scale_min=1.0, aug_scale_max=1.0,
                 aug_type=None, max_level=6, dtype='float32',
                 segmentation_groundtruth_padded_size=None):
        """Initialises the parser.

        Args:
          output_size: [h, w] ints, network input size before padding.
          num_classes: int, C (channels, void channel 0 included).
          id_to_channel: int sequence indexed by dataset category id; -1 for
            ids that are not categories (DatasetDescriptor.id_to_channel).
          is_thing_channel: bool sequence [C].
          level: int, heatmap stride 2^level.
          num_instances: int, K mask slots.
          gaussian_iou: float, min IoU of the CenterNet Gaussian radius.
          max_num_stuff_centers: int, stuff centers per class at most.
          min_stuff_area: int, min stuff region area in input pixels.
          stuff_dilation: odd int, dilation square before stuff components
            (61 = the reference's three 21x21 max-pools).
          center_type: 'box' (bounding-box centers, the single-scale
            reference) or 'centroid' (mean pixel coordinate of the thing /
            stuff region; Gaussian size still from the box).
          mask_target_stride: int s, mask targets at input resolution / s.
          aug_rand_hflip: bool, random horizontal flip (p 0.5) in training.
          aug_scale_min, aug_scale_max: floats, scale jitter range.
          aug_type: None or a photometric AutoAugment policy name (e.g.
            'panoptic_deeplab_policy').
          max_level: int, the padded size is a multiple of 2^max_level.
          dtype: image dtype, 'float32', 'float16' or 'bfloat16'.
          segmentation_groundtruth_padded_size: [Hp, Wp] ints for the eval
            ground-truth maps; None = the padded input size (images larger
            than it are refused with the config field to set).
        """
        if center_type not in ('box', 'centroid'):
            raise ValueError("center_type must be 'box' or 'centroid', "
                             f'got {center_type!r}')
        if stuff_dilation % 2 != 1:
            raise ValueError(f'stuff_dilation must be odd, got {stuff_dilation}')
        if len(is_thing_channel) != num_classes:
            raise ValueError(f'is_thing_channel has {len(is_thing_channel)} '
                             f'entries; expected num_classes = {num_classes}')
        self._output_size = [int(v) for v in output_size]
        stride = 2 ** max(level, max_level)
        self._padded_size = preprocess_ops.compute_padded_size(
            self._output_size, stride)
        if any(v % mask_target_stride for v in self._padded_size):
            raise ValueError(f'padded size {self._padded_size} is not a '
                             f'multiple of mask_target_stride {mask_target_stride}')
        self._num_classes = int(num_classes)
        self._id_to_channel = np.asarray(id_to_channel, np.int32)
        self._is_thing_channel = np.asarray(is_thing_channel, bool)
        self._target_kwargs = dict(
            is_thing_channel=self._is_thing_channel,
            num_classes=self._num_classes, level=level,
            num_instances=num_instances, gaussian_iou=gaussian_iou,
            max_num_stuff_centers=max_num_stuff_centers,
            min_stuff_area=min_stuff_area, stuff_dilation=stuff_dilation,
            mask_target_stride=mask_target_stride, center_type=center_type)
        self._aug_rand_hflip = aug_rand_hflip
        self._aug_scale_min = aug_scale_min
        self._aug_scale_max = aug_scale_max
        self._augmenter = None
        if aug_type:
            self._augmenter = augment.AutoAugment(augmentation_name=aug_type)
            ops = {op[0] for sub in self._augmenter.policies for op in sub}
            if not ops <= _PHOTOMETRIC_OPS:
                raise ValueError(
                    f'AutoAugment policy {aug_type!r} moves pixels '
                    f'({sorted(ops - _PHOTOMETRIC_OPS)}), which would '
                    'misalign the masks; use a photometric policy such as '
                    "'panoptic_deeplab_policy'")
        self._dtype = tf.dtypes.as_dtype(dtype)
        self._gt_padded_size = segmentation_groundtruth_padded_size

    @property
    def padded_size(self):
        """[Hp, Wp] ints, the network input size."""
        return list(self._padded_size)

    def _channels(self, category_mask):
        """Dataset ids [H, W] -> channels + 1 [H, W] (0 stays for padding).

        Raises InvalidArgumentError naming an id that maps to no channel.
        """
        table = tf.constant(self._id_to_channel)
        ids = tf.cast(category_mask, tf.int32)
        in_range = tf.logical_and(ids >= 0, ids < table.shape[0])
        channels = tf.gather(table, tf.clip_by_value(ids, 0, table.shape[0] - 1))
        bad = tf.logical_or(tf.logical_not(in_range), channels < 0)
        first_bad = tf.gather(tf.reshape(ids, [-1]), tf.argmax(
            tf.reshape(tf.cast(bad, tf.int32), [-1]), output_type=tf.int32))
        check = tf.debugging.Assert(
            tf.logical_not(tf.reduce_any(bad)),
            ['category_mask has a category id that maps to no channel:',
             first_bad])
        with tf.control_dependencies([check]):
            return tf.identity(channels + 1)

    def _parse(self, data, training):
        image = data['image']
        labels = tf.stack([self._channels(data['category_mask']),
                           tf.cast(data['instance_mask'], tf.int32)], axis=0)
        if training and self._aug_rand_hflip:
            image, _, labels = preprocess_ops.random_horizontal_flip(
                image, masks=labels)
        if training and self._augmenter is not None:
            image = self._augmenter.distort(image)
        if training:
            image = preprocess_ops.normalize_image(image)
            image, image_info = preprocess_ops.resize_and_crop_image(
                image, self._output_size, self._padded_size,
                self._aug_scale_min, self._aug_scale_max)
        else:
            # The inference preprocessing serving and predict use too.
            image, image_info = preprocess.preprocess_image(
                image, self._output_size, self._padded_size)
        image = tf.ensure_shape(image, self._padded_size + [3])
        labels = _resize_crop_pad_labels(
            tf.transpose(labels, [1, 2, 0]), image_info, self._output_size,
            self._padded_size)
        category, instance = labels[..., 0] - 1, labels[..., 1]
        targets = target_ops.build_targets(category, instance,
                                           **self._target_kwargs)
        targets['padding_mask'] = tf.cast(category < 0, tf.float32)
        targets['image_info'] = image_info
        return tf.cast(image, self._dtype), targets

    def _parse_train_data(self, data):
        """Augmented image and training targets (module docstring)."""
        return self._parse(data, training=True)

    def _parse_eval_data(self, data):
        """Resized (no jitter) image, targets and padded ground-truth maps."""
        image, labels = self._parse(data, training=False)
        category = tf.cast(data['category_mask'], tf.int32)[..., tf.newaxis]
        instance = tf.cast(data['instance_mask'], tf.int32)[..., tf.newaxis]
        height, width = self._gt_padded_size or self._padded_size
        size = tf.shape(category)[:2]
        checks = [tf.debugging.Assert(
            tf.reduce_all(size <= tf.constant([height, width])),
            ['eval ground truth larger than '
             f'segmentation_groundtruth_padded_size {[height, width]} '
             '(default: the input size); set it to at least the largest '
             'original image size. source_id, size:', data['source_id'],
             size])]
        with tf.control_dependencies(checks):
            category = tf.image.pad_to_bounding_box(category, 0, 0, height,
                                                    width)
            instance = tf.image.pad_to_bounding_box(instance, 0, 0, height,
                                                    width)
        labels['groundtruth_category_mask'] = category[..., 0]
        labels['groundtruth_instance_mask'] = instance[..., 0]
        labels['source_id'] = data['source_id']
        return image, labels
