"""Multi-scale MaskConver input parser (optionally with copy-paste).

Input: the decoder's dict (`image` uint8 [H, W, 3], `category_mask`,
`instance_mask` int32 [H, W] dataset ids / instance ids, `source_id`, ...).
For copy-paste in training the dict also holds `COPY_PASTE_KEY`: a second
decoded dict, produced by `copy_paste_sample_fn` (a zip of the stream with an
independently shuffled copy, applied by the input reader's `sample_fn`).

Training: each sample is flipped (p 0.5, if `aug_rand_hflip`) and resized /
cropped / padded to the network input with its own scale jitter (Model
Garden's `resize_and_crop_image`, on 0-255 pixels); then the second sample's
things and stuff are pasted (`maskconver_tf.ops.copy_paste`), and the image
is normalised with ImageNet mean / std and zeroed where it is padding. Eval:
`maskconver_tf.ops.preprocess.preprocess_image` (no jitter), as serving.

Output: (image [Hp, Wp, 3] of `dtype`, labels), static shapes, (Hp, Wp) =
`output_size` rounded up to a multiple of 2^max_level. Labels: the
`build_multiscale_targets` dict (heatmaps [N, C], classes / center_levels /
center_indices [K], masks [Hp / s, Wp / s, K], mask_weights [K],
num_instances, num_dropped_segments), padding_mask float32 [Hp, Wp] and
image_info float32 [4, 2]; eval adds groundtruth_category_mask /
groundtruth_instance_mask (original resolution, dataset ids, zero-padded to
`segmentation_groundtruth_padded_size`) and source_id, as the single-scale
parser.
"""

import tensorflow as tf
from official.vision.ops import preprocess_ops

from maskconver_tf.dataloaders import maskconver_input
from maskconver_tf.ops import copy_paste
from maskconver_tf.ops import multiscale_targets
from maskconver_tf.ops import preprocess

COPY_PASTE_KEY = 'copy_paste_sample'
# The single-scale parser's label resize / crop / pad (same rounding).
_resize_crop_pad_labels = maskconver_input._resize_crop_pad_labels  # pylint: disable=protected-access
_LABEL_KEYS = ('image', 'category_mask', 'instance_mask')


def copy_paste_sample_fn(shuffle_buffer_size, seed=None):
    """A `sample_fn` pairing every decoded sample with a random other one.

    The stream is zipped with an independently shuffled copy of itself (the
    reference's scheme); only the image and masks of the copy are kept.

    Args:
      shuffle_buffer_size: int, shuffle buffer of the copy.
      seed: optional int shuffle seed.

    Returns:
      A function tf.data.Dataset -> tf.data.Dataset of dicts with
      `COPY_PASTE_KEY`.
    """
    def sample_fn(dataset):
        second = dataset.map(lambda d: {k: d[k] for k in _LABEL_KEYS})
        second = second.shuffle(shuffle_buffer_size, seed=seed)
        return tf.data.Dataset.zip((dataset, second)).map(
            lambda first, other: dict(first, **{COPY_PASTE_KEY: other}))
    return sample_fn


class Parser(maskconver_input.Parser):
    """Parses decoded panoptic examples into multi-scale MaskConver targets."""

    def __init__(self, output_size, num_classes, id_to_channel,
                 is_thing_channel, min_level=3, max_level=7,
                 fpn_low_range=(0, 100, 200, 400, 800),
                 fpn_high_range=(100, 200, 400, 800, 12.5e6),
                 num_instances=256, gaussian_iou=0.7, stuff_centers='class',
                 max_num_stuff_centers=1, min_stuff_area=1024,
                 stuff_dilation=61, center_type='centroid',
                 mask_target_stride=1, aug_rand_hflip=True, aug_scale_min=1.0,
                 aug_scale_max=1.0, aug_type=None, copypaste_frequency=0.0,
                 copypaste_aug_scale_min=1.0, copypaste_aug_scale_max=1.0,
                 dtype='float32', segmentation_groundtruth_padded_size=None):
        """Initialises the parser.

        Args (the single-scale parser's, plus):
          min_level, max_level: FPN levels of the heatmaps; the padded size
            is a multiple of 2^max_level.
          fpn_low_range, fpn_high_range: per-level inclusive half-diagonal
            ranges (input pixels), see `build_multiscale_targets`.
          stuff_centers: 'class' or 'components'.
          copypaste_frequency: paste probability per thing / stuff class of
            the second sample; used when the data carries `COPY_PASTE_KEY`.
          copypaste_aug_scale_min, copypaste_aug_scale_max: scale jitter of
            the second sample.
        """
        super().__init__(
            output_size, num_classes, id_to_channel, is_thing_channel,
            level=min_level, num_instances=num_instances,
            gaussian_iou=gaussian_iou,
            max_num_stuff_centers=max_num_stuff_centers,
            min_stuff_area=min_stuff_area, stuff_dilation=stuff_dilation,
            center_type=center_type, mask_target_stride=mask_target_stride,
            aug_rand_hflip=aug_rand_hflip, aug_scale_min=aug_scale_min,
            aug_scale_max=aug_scale_max, aug_type=aug_type,
            max_level=max_level, dtype=dtype,
            segmentation_groundtruth_padded_size=(
                segmentation_groundtruth_padded_size))
        if stuff_centers not in multiscale_targets.STUFF_CENTERS:
            raise ValueError(f'stuff_centers must be one of '
                             f'{multiscale_targets.STUFF_CENTERS}, got '
                             f'{stuff_centers!r}')
        num_levels = max_level - min_level + 1
        if not len(fpn_low_range) == len(fpn_high_range) == num_levels:
            raise ValueError(
                f'fpn_low_range {list(fpn_low_range)} / fpn_high_range '
                f'{list(fpn_high_range)} need {num_levels} entries (levels '
                f'{min_level}..{max_level})')
        self._target_kwargs = dict(
            is_thing_channel=self._is_thing_channel,
            num_classes=self._num_classes, min_level=min_level,
            max_level=max_level,
            fpn_low_range=[float(v) for v in fpn_low_range],
            fpn_high_range=[float(v) for v in fpn_high_range],
            num_instances=num_instances, gaussian_iou=gaussian_iou,
            stuff_centers=stuff_centers,
            max_num_stuff_centers=max_num_stuff_centers,
            min_stuff_area=min_stuff_area, stuff_dilation=stuff_dilation,
            mask_target_stride=mask_target_stride, center_type=center_type)
        self._is_stuff_channel = [
            bool(c > 0 and not t) for c, t in enumerate(self._is_thing_channel)]
        self._copypaste_frequency = float(copypaste_frequency)
        self._copypaste_scale = (copypaste_aug_scale_min,
                                 copypaste_aug_scale_max)

    def _augment_and_resize(self, data, scale_range, seed):
        """Flip + jitter one sample.

        Returns:
          image float32 [Hp, Wp, 3] in 0-255 (0 in the padding), category
          int32 [Hp, Wp] channels (-1 padding), instance int32 [Hp, Wp].
        """
        image = data['image']
        if self._augmenter is not None:  # photometric only: on uint8 pixels
            image = self._augmenter.distort(image)
        image = tf.cast(image, tf.float32)
        labels = tf.stack([self._channels(data['category_mask']),
                           tf.cast(data['instance_mask'], tf.int32)], axis=0)
        if self._aug_rand_hflip:
            image, _, labels = preprocess_ops.random_horizontal_flip(
                image, masks=labels, seed=seed)
        image, image_info = preprocess_ops.resize_and_crop_image(
            image, self._output_size, self._padded_size, scale_range[0],
            scale_range[1], seed=seed)
        labels = _resize_crop_pad_labels(
            tf.transpose(labels, [1, 2, 0]), image_info, self._output_size,
            self._padded_size)
        image = tf.ensure_shape(image, self._padded_size + [3])
        return image, labels[..., 0] - 1, labels[..., 1], image_info

    def _targets(self, image, category, instance, image_info):
        targets = multiscale_targets.build_multiscale_targets(
            category, instance, **self._target_kwargs)
        targets['padding_mask'] = tf.cast(category < 0, tf.float32)
        targets['image_info'] = image_info
        return tf.cast(image, self._dtype), targets

    def _parse_train_data(self, data):
        """Augmented (and copy-pasted) image and training targets."""
        # Model Garden's default op seed 1 for the first sample; the second
        # needs its own draws (the same op seed would repeat the first's).
        image, category, instance, image_info = self._augment_and_resize(
            data, (self._aug_scale_min, self._aug_scale_max), seed=1)
        if COPY_PASTE_KEY in data and self._copypaste_frequency > 0:
            image2, category2, instance2, _ = self._augment_and_resize(
                data[COPY_PASTE_KEY], self._copypaste_scale, seed=None)
            image, category, instance = copy_paste.copy_paste(
                image, category, instance, image2, category2, instance2,
                is_stuff=self._is_stuff_channel,
                probability=self._copypaste_frequency)
        image = preprocess_ops.normalize_image(
            image, offset=preprocess.MEAN_RGB, scale=preprocess.STDDEV_RGB)
        # Padding is 0 after normalisation, as the single-scale pipeline.
        image = tf.where(category[..., tf.newaxis] < 0, 0.0, image)
        return self._targets(image, category, instance, image_info)

    def _parse(self, data, training):
        """Eval: inference preprocessing (no jitter) and targets."""
        if training:
            return self._parse_train_data(data)
        image, image_info = preprocess.preprocess_image(
            data['image'], self._output_size, self._padded_size)
        labels = tf.stack([self._channels(data['category_mask']),
                           tf.cast(data['instance_mask'], tf.int32)], axis=-1)
        labels = _resize_crop_pad_labels(
            labels, image_info, self._output_size, self._padded_size)
        return self._targets(image, labels[..., 0] - 1, labels[..., 1],
                             image_info)
