"""Record -> tensors, for our TFRecords and for tfds `coco/2017_panoptic`.

Both decoders return the same dict (the decoder contract of the package):
  image                 uint8 [H, W, 3]
  category_mask         int32 [H, W], dataset category id, 0 = void
  instance_mask         int32 [H, W], k + 1 on pixels of object k (things
                        only), 0 = stuff / void / none
  source_id             tf.string scalar (the COCO image id as text)
  height, width         int32 scalars
  groundtruth_classes   int32 [N], dataset category ids
  groundtruth_is_crowd  bool [N]
  groundtruth_area      float32 [N]
  groundtruth_boxes     float32 [N, 4], normalised (ymin, xmin, ymax, xmax)

Mask PNGs may be 8- or 16-bit (the converter widens past 255). Because
`tf.io.decode_png(..., dtype=tf.uint16)` rescales 8-bit data (7 -> 1799),
the bit depth is read from the PNG header in-graph and the matching dtype
is decoded (`decode_png_mask`).
"""

from typing import Optional, Sequence

import tensorflow as tf

from official.vision.dataloaders import decoder as mg_decoder
from official.vision.dataloaders import tf_example_decoder

# PNG: 8-byte signature, 4-byte IHDR length, 'IHDR', width (4), height (4),
# then the bit depth byte.
_PNG_BIT_DEPTH_OFFSET = 24


def png_bit_depth(png_bytes: tf.Tensor) -> tf.Tensor:
    """uint8 scalar: the bit depth byte of a PNG's IHDR chunk (8, 16, ...)."""
    return tf.io.decode_raw(
        tf.strings.substr(png_bytes, _PNG_BIT_DEPTH_OFFSET, 1), tf.uint8)[0]


def decode_png_mask(png_bytes: tf.Tensor) -> tf.Tensor:
    """Decodes an 8- or 16-bit single-channel PNG mask without rescaling.

    Args:
      png_bytes: tf.string scalar, a grayscale PNG of bit depth 8 or 16.

    Returns:
      int32 [H, W], the stored values.
    """
    mask = tf.cond(
        tf.equal(png_bit_depth(png_bytes), 16),
        lambda: tf.cast(tf.io.decode_png(png_bytes, 1, tf.uint16), tf.int32),
        lambda: tf.cast(tf.io.decode_png(png_bytes, 1, tf.uint8), tf.int32))
    mask = tf.squeeze(mask, axis=-1)
    mask.set_shape([None, None])
    return mask


class TfExampleDecoder(tf_example_decoder.TfExampleDecoder):
    """Decodes our (Model Garden key) panoptic tf.Examples.

    Extends Model Garden's detection decoder (image, boxes, classes, crowd,
    area, optional per-object masks) with the panoptic masks; the mask keys
    are configurable as in Model Garden's panoptic decoders.
    """

    def __init__(self,
                 panoptic_category_mask_key: str = 'image/panoptic/category_mask',
                 panoptic_instance_mask_key: str = 'image/panoptic/instance_mask',
                 include_semantic_mask: bool = False,
                 semantic_mask_key: str = 'image/segmentation/class/encoded',
                 include_mask: bool = False,
                 regenerate_source_id: bool = False,
                 mask_binarize_threshold: Optional[float] = None):
        """Args:
          panoptic_category_mask_key: PNG of category ids (required key).
          panoptic_instance_mask_key: PNG of instance ids (required key).
          include_semantic_mask: also return `semantic_mask` int32 [H, W]
            (descriptor channel per pixel, 0 = void) from `semantic_mask_key`.
          semantic_mask_key: the semantic PNG key.
          include_mask: also return Model Garden's
            `groundtruth_instance_masks` float32 [N, H, W] and
            `groundtruth_instance_masks_png` from image/object/mask.
          regenerate_source_id: as Model Garden (hash of the image bytes).
          mask_binarize_threshold: as Model Garden, for per-object masks.
        """
        super().__init__(include_mask=include_mask,
                         regenerate_source_id=regenerate_source_id,
                         mask_binarize_threshold=mask_binarize_threshold)
        self._mask_keys = {'category_mask': panoptic_category_mask_key,
                           'instance_mask': panoptic_instance_mask_key}
        if include_semantic_mask:
            self._mask_keys['semantic_mask'] = semantic_mask_key
        # No default: a record without its masks must fail, not read as void.
        self._mask_features = {key: tf.io.FixedLenFeature((), tf.string)
                               for key in self._mask_keys.values()}

    def decode(self, serialized_example):
        """Decodes one serialized tf.Example.

        Args:
          serialized_example: tf.string scalar.

        Returns:
          The module's dict (see module docstring), plus `semantic_mask`
          and Model Garden's per-object mask fields when enabled.
        """
        decoded = super().decode(serialized_example)
        parsed = tf.io.parse_single_example(serialized_example,
                                            self._mask_features)
        for name, key in self._mask_keys.items():
            decoded[name] = decode_png_mask(parsed[key])
        decoded['groundtruth_classes'] = tf.cast(
            decoded['groundtruth_classes'], tf.int32)
        decoded['height'] = tf.cast(decoded['height'], tf.int32)
        decoded['width'] = tf.cast(decoded['width'], tf.int32)
        return decoded


def verify_tfds_label_names(label_names: Sequence[str], descriptor) -> bool:
    """Checks that tfds label i is the descriptor's i-th category.

    tfds `coco/2017_panoptic` names its ClassLabel from the categories of the
    panoptic JSON in file order, which is ascending id order; the descriptor
    is ascending by id too.

    Returns:
      True if the names were checked and match; False if they carry no
      information (unnamed ClassLabel: '0', '1', ... as in tfds mocks).

    Raises:
      ValueError: different counts or a name mismatch (names the first).
    """
    names = [str(n) for n in label_names]
    if len(names) != len(descriptor):
        raise ValueError(f'tfds has {len(names)} labels, descriptor '
                         f'{descriptor.source} has {len(descriptor)} categories')
    if all(n == str(i) for i, n in enumerate(names)):
        return False
    for i, (name, category) in enumerate(zip(names, descriptor.categories)):
        if name != category.name:
            raise ValueError(
                f'tfds label {i} is {name!r} but the descriptor\'s category '
                f'{i} (ascending ids) is {category.name!r} (id {category.id}): '
                'the label -> category id map would be wrong')
    return True


class TfdsPanopticDecoder(mg_decoder.Decoder):
    """Decodes tfds `coco/2017_panoptic` examples into the package's dict.

    Input features (already decoded by tfds): `image` uint8 [H, W, 3],
    `image/id` int64, `panoptic_image` uint8 [H, W, 3] (RGB-encoded segment
    ids, id = R + 256 G + 256^2 B, 0 = void), `panoptic_objects` {`id` int64
    [N], `area` int64 [N], `bbox` float32 [N, 4] (ymin, xmin, ymax, xmax),
    `label` int64 [N] (contiguous ClassLabel index), `is_crowd` bool [N]}.

    `label` i maps to the descriptor's i-th category (ascending ids). PNG ids
    are matched to objects with a sorted search (static-rank ops only); ids
    without an object are void. Instance id of object k is k + 1.
    """

    def __init__(self, descriptor, skip_crowd: bool = False,
                 validate: bool = True):
        """Args:
          descriptor: `DatasetDescriptor` whose categories, ascending by id,
            are the tfds labels in order (133 for COCO).
          skip_crowd: crowd segments become void in both masks (as
            `create_tfrecords --skip_crowd`); they stay in the object lists.
          validate: assert in-graph that image and panoptic image have the
            same size and that the object fields have equal lengths. Off, the
            object fields are cut to the shortest (tfds mocks are not
            self-consistent).
        """
        self._descriptor = descriptor
        self._skip_crowd = skip_crowd
        self._validate = validate
        self._label_to_id = tf.constant(descriptor.ids, tf.int32)
        self._label_is_thing = tf.constant(
            [c.isthing for c in descriptor.categories], tf.bool)

    @classmethod
    def from_builder(cls, builder, descriptor, **kwargs):
        """Builds from a tfds builder, checking its label names if it has any."""
        names = builder.info.features['panoptic_objects']['label'].names
        verify_tfds_label_names(names, descriptor)
        return cls(descriptor, **kwargs)

    def decode(self, serialized_example):
        """Maps one tfds example dict (see class docstring) to the contract."""
        example = serialized_example
        image = example['image']
        panoptic = example['panoptic_image']
        objects = example['panoptic_objects']
        obj_ids = tf.cast(objects['id'], tf.int64)
        labels = tf.cast(objects['label'], tf.int32)
        is_crowd = tf.cast(objects['is_crowd'], tf.bool)
        areas = tf.cast(objects['area'], tf.float32)
        boxes = tf.reshape(tf.cast(objects['bbox'], tf.float32), [-1, 4])

        lengths = tf.stack([tf.size(obj_ids), tf.size(labels),
                            tf.size(is_crowd), tf.size(areas),
                            tf.shape(boxes)[0]])
        if self._validate:
            checks = [
                tf.debugging.assert_equal(
                    tf.shape(image)[:2], tf.shape(panoptic)[:2],
                    message='tfds image and panoptic_image differ in size'),
                tf.debugging.assert_equal(
                    tf.reduce_min(lengths), tf.reduce_max(lengths),
                    message='panoptic_objects fields differ in length'),
            ]
            with tf.control_dependencies(checks):
                lengths = tf.identity(lengths)
        n = tf.reduce_min(lengths)
        obj_ids, labels, is_crowd, areas, boxes = (
            obj_ids[:n], labels[:n], is_crowd[:n], areas[:n], boxes[:n])

        classes = tf.gather(self._label_to_id, labels)
        is_thing = tf.gather(self._label_is_thing, labels)
        visible = tf.ones_like(is_crowd)
        if self._skip_crowd:
            visible = tf.logical_not(is_crowd)
        seg_category = tf.where(visible, classes, 0)
        seg_instance = tf.where(visible & is_thing,
                                tf.range(1, n + 1, dtype=tf.int32), 0)

        rgb = tf.cast(panoptic, tf.int64)
        pixel_ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        shape = tf.shape(pixel_ids)
        flat = tf.reshape(pixel_ids, [1, -1])
        order = tf.argsort(obj_ids, stable=True)
        # A sentinel above every 24-bit id keeps positions in range when N = 0
        # or an id sorts past the last object.
        sorted_ids = tf.concat(
            [tf.gather(obj_ids, order), tf.constant([2 ** 40], tf.int64)], 0)
        pos = tf.searchsorted(sorted_ids[tf.newaxis], flat, side='left')[0]
        matched = tf.logical_and(tf.equal(tf.gather(sorted_ids, pos), flat[0]),
                                 tf.not_equal(flat[0], 0))
        obj_index = tf.gather(tf.concat([order, [0]], 0), pos)
        seg_category = tf.concat([seg_category, [0]], 0)
        seg_instance = tf.concat([seg_instance, [0]], 0)
        category_mask = tf.where(matched, tf.gather(seg_category, obj_index), 0)
        instance_mask = tf.where(matched, tf.gather(seg_instance, obj_index), 0)

        image = tf.cast(image, tf.uint8)
        image.set_shape([None, None, 3])
        image_shape = tf.shape(image)
        return {
            'source_id': tf.strings.as_string(example['image/id']),
            'image': image,
            'height': image_shape[0],
            'width': image_shape[1],
            'category_mask': tf.reshape(category_mask, shape[:2]),
            'instance_mask': tf.reshape(instance_mask, shape[:2]),
            'groundtruth_classes': classes,
            'groundtruth_is_crowd': is_crowd,
            'groundtruth_area': areas,
            'groundtruth_boxes': boxes,
        }


def build_decoder(source: str = 'tfrecord', descriptor=None, **kwargs):
    """'tfrecord' -> `TfExampleDecoder(**kwargs)`; 'tfds' ->
    `TfdsPanopticDecoder(descriptor, **kwargs)`."""
    if source == 'tfrecord':
        return TfExampleDecoder(**kwargs)
    if source == 'tfds':
        if descriptor is None:
            raise ValueError('the tfds decoder needs a DatasetDescriptor to map '
                             'tfds labels to category ids')
        return TfdsPanopticDecoder(descriptor, **kwargs)
    raise ValueError(f"unknown decoder source {source!r}; expected 'tfrecord' "
                     "or 'tfds'")
