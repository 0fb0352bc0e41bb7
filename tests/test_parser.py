"""The MaskConver parser end to end in tf.data."""

import numpy as np
import pytest
import tensorflow as tf

from maskconver_tf.dataloaders import maskconver_input

# Dataset ids: 0 void, 7 thing, 9 stuff (ids 1..6 and 8 are no category).
ID_TO_CHANNEL = [0, -1, -1, -1, -1, -1, -1, 1, -1, 2]
IS_THING = [False, True, False]
RED = [255, 0, 0]


def scene(height=64, width=64):
    """Decoder-style dict: a red thing (id 7, instance 5) at rows 20..35,
    cols 4..19, stuff (id 9) on the bottom 16 rows, grey elsewhere (void)."""
    image = np.full([height, width, 3], 128, np.uint8)
    category = np.zeros([height, width], np.int32)
    instance = np.zeros([height, width], np.int32)
    image[20:36, 4:20] = RED
    category[20:36, 4:20] = 7
    instance[20:36, 4:20] = 5
    category[height - 16:] = 9
    return {'image': image, 'category_mask': category,
            'instance_mask': instance, 'source_id': 'img-1',
            'height': np.int32(height), 'width': np.int32(width)}


def make_parser(**kwargs):
    args = dict(output_size=[64, 64], num_classes=3,
                id_to_channel=ID_TO_CHANNEL, is_thing_channel=IS_THING,
                level=3, num_instances=4, min_stuff_area=64,
                max_num_stuff_centers=1, stuff_dilation=5)
    args.update(kwargs)
    return maskconver_input.Parser(**args)


def dataset(examples):
    spec = {'image': tf.TensorSpec([None, None, 3], tf.uint8),
            'category_mask': tf.TensorSpec([None, None], tf.int32),
            'instance_mask': tf.TensorSpec([None, None], tf.int32),
            'source_id': tf.TensorSpec([], tf.string),
            'height': tf.TensorSpec([], tf.int32),
            'width': tf.TensorSpec([], tf.int32)}
    return tf.data.Dataset.from_generator(lambda: iter(examples),
                                          output_signature=spec)


def test_train_pipeline_static_shapes_and_values():
    parser = make_parser(aug_scale_min=0.5, aug_scale_max=1.5,
                         mask_target_stride=2)
    ds = dataset([scene(), scene(48, 80)]).repeat(3).map(
        parser.parse_fn(is_training=True)).batch(2, drop_remainder=True)
    image_spec, label_spec = ds.element_spec
    assert image_spec.shape.as_list() == [2, 64, 64, 3]
    shapes = {k: v.shape.as_list() for k, v in label_spec.items()}
    assert shapes == {
        'heatmaps': [2, 8, 8, 3], 'classes': [2, 4], 'masks': [2, 32, 32, 4],
        'mask_weights': [2, 4], 'center_indices': [2, 4, 2],
        'num_instances': [2], 'num_dropped_segments': [2],
        'padding_mask': [2, 64, 64], 'image_info': [2, 4, 2]}
    for images, labels in ds:
        images, labels = images.numpy(), {k: v.numpy() for k, v in labels.items()}
        # Padded pixels are zero in the normalised image.
        assert np.all(images[labels['padding_mask'] == 1] == 0)
        # Real slots: masks 0/1, zero on padding; padding slots: -1.
        for b in range(2):
            n = labels['num_instances'][b]
            masks = labels['masks'][b]
            assert set(np.unique(masks[..., :n])) <= {0.0, 1.0}
            pad = labels['padding_mask'][b, 1::2, 1::2] == 1
            assert np.all(masks[..., :n][pad] == 0)
            np.testing.assert_array_equal(masks[..., n:], -1.0)
            np.testing.assert_array_equal(labels['classes'][b, n:], -1)
            assert set(labels['classes'][b, :n]) <= {1, 2}


def test_flip_keeps_image_and_masks_together():
    parser = make_parser(aug_rand_hflip=True)
    ds = dataset([scene()]).repeat(12).map(parser.parse_fn(is_training=True))
    columns = set()
    for image, labels in ds:
        red = image.numpy()[..., 0] > 1.0  # normalised red channel
        thing = labels['masks'].numpy()[..., 0]
        np.testing.assert_array_equal(thing, red)
        assert labels['classes'].numpy()[0] == 1
        # Heatmap peak column: box center x 11.5 -> 1, or flipped 51.5 -> 6.
        y, x = labels['center_indices'].numpy()[0]
        assert labels['heatmaps'].numpy()[y, x, 1] == 1.0
        assert (red[20, 4], red[20, 59]) == ((True, False) if x == 1 else
                                             (False, True))
        columns.add(int(x))
    assert columns == {1, 6}  # both outcomes occurred


def _shrink(mask):
    """Pixels whose 4 neighbours are also in the mask (edges: excluded)."""
    inner = mask.copy()
    inner[1:-1, 1:-1] &= (mask[:-2, 1:-1] & mask[2:, 1:-1] &
                          mask[1:-1, :-2] & mask[1:-1, 2:])
    inner[[0, -1]] = False
    inner[:, [0, -1]] = False
    return inner


def test_scale_jitter_keeps_image_masks_and_image_info_together():
    parser = make_parser(aug_rand_hflip=False, aug_scale_min=0.5,
                         aug_scale_max=1.5)
    example = {k: tf.constant(v) for k, v in scene().items()}
    scales, offsets = [], []
    for seed in range(8):
        tf.random.set_seed(seed)
        image, labels = parser.parse_fn(is_training=True)(example)
        info = labels['image_info'].numpy()
        np.testing.assert_array_equal(info[:2], [[64, 64], [64, 64]])
        scale, offset = info[2], info[3].astype(int)
        # Square in, square out: one scale, jittered within 0.5-1.5 up to
        # the rounding of the scaled size (64 * s to whole pixels).
        assert scale[0] == scale[1]
        assert 0.5 - 0.5 / 64 <= scale[0] <= 1.5 + 0.5 / 64
        scaled = int(round(64 * scale[0]))
        assert scale[0] == pytest.approx(scaled / 64, rel=1e-6)
        assert np.all(offset >= 0) and np.all(offset <= max(scaled - 64, 0))
        # The image covers rows / cols [0, scaled - offset); the rest is
        # padding.
        extent = min(64, scaled - offset[0]), min(64, scaled - offset[1])
        expected_padding = np.ones([64, 64])
        expected_padding[:extent[0], :extent[1]] = 0
        np.testing.assert_array_equal(labels['padding_mask'],
                                      expected_padding)
        # The thing's mask target from image_info alone: output pixel i
        # reads input pixel floor((i + offset + 0.5) * 64 / scaled)
        # (nearest, half-pixel); the thing is rows 20..35, cols 4..19.
        rows = np.floor((np.arange(64) + offset[0] + 0.5) * 64 / scaled)
        cols = np.floor((np.arange(64) + offset[1] + 0.5) * 64 / scaled)
        expected = (((rows >= 20) & (rows <= 35))[:, None] &
                    ((cols >= 4) & (cols <= 19))[None, :])
        expected[extent[0]:] = False
        expected[:, extent[1]:] = False
        classes = labels['classes'].numpy().tolist()
        if 1 in classes:
            thing = labels['masks'].numpy()[..., classes.index(1)] == 1
        else:  # cropped away
            thing = np.zeros([64, 64], bool)
        np.testing.assert_array_equal(thing, expected)
        # The image agrees away from the thing's border (bilinear blends
        # the border pixels): red inside, not red outside.
        red = image.numpy()[..., 0] > 1.0
        assert np.all(red[_shrink(thing)])
        assert not np.any(red[_shrink(~thing)])
        scales.append(scale[0])
        offsets.append(offset)
    # Both jitter branches occurred: shrunk and padded, enlarged and cropped.
    assert min(scales) < 1.0 < max(scales)
    assert np.any(np.asarray(offsets) > 0)


def test_eval_image_info_and_groundtruth_for_non_square_image():
    parser = make_parser(segmentation_groundtruth_padded_size=[100, 128])
    example = scene(48, 96)
    image, labels = parser.parse_fn(is_training=False)(
        {k: tf.constant(v) for k, v in example.items()})
    np.testing.assert_allclose(
        labels['image_info'], [[48, 96], [64, 64], [2 / 3, 2 / 3], [0, 0]],
        rtol=1e-6)
    assert image.shape == (64, 64, 3)
    # Scaled to 32x64: rows 32.. are padding.
    padding = labels['padding_mask'].numpy()
    np.testing.assert_array_equal(padding[:32], 0)
    np.testing.assert_array_equal(padding[32:], 1)
    category = labels['groundtruth_category_mask'].numpy()
    instance = labels['groundtruth_instance_mask'].numpy()
    assert category.shape == instance.shape == (100, 128)
    np.testing.assert_array_equal(category[:48, :96], example['category_mask'])
    np.testing.assert_array_equal(instance[:48, :96], example['instance_mask'])
    assert category[48:].max() == 0 and category[:, 96:].max() == 0
    assert labels['source_id'].numpy() == b'img-1'
    # Nearest (half-pixel) sampling: output row i reads input row
    # floor(1.5 i + 0.75); rows 20..35 / cols 4..19 -> rows 13..23 / cols 3..12.
    thing = labels['masks'].numpy()[..., 0]
    assert np.argwhere(thing).min(0).tolist() == [13, 3]
    assert np.argwhere(thing).max(0).tolist() == [23, 12]
    # Eval does not flip: the same output every time.
    image2, _ = parser.parse_fn(is_training=False)(
        {k: tf.constant(v) for k, v in example.items()})
    np.testing.assert_array_equal(image, image2)


def test_eval_groundtruth_defaults_to_the_padded_input_size():
    """No padded size: static [Hp, Wp] maps; larger images are refused."""
    parser = make_parser(output_size=[60, 60], max_level=4)
    assert parser.padded_size == [64, 64]
    ds = dataset([scene(48, 60)]).map(parser.parse_fn(is_training=False))
    assert ds.element_spec[1]['groundtruth_category_mask'].shape == [64, 64]
    _, labels = next(iter(ds))
    category = labels['groundtruth_category_mask'].numpy()
    assert category.shape == (64, 64)
    assert category[20:36, 4:20].min() == 7 and category[48:].max() == 0
    big = dataset([scene(80, 64)]).map(parser.parse_fn(is_training=False))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r'segmentation_groundtruth_padded_size \[64, 64\]'
                       r'[\s\S]*img-1'):
        next(iter(big))


def test_unknown_category_id_raises_with_the_id():
    example = scene()
    example['category_mask'][0, 0] = 8  # not a category
    parser = make_parser()
    ds = dataset([example]).map(parser.parse_fn(is_training=True))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r'maps to no channel[\s\S]*\b8\b'):
        next(iter(ds))


def test_autoaugment_photometric_only_and_dtype():
    parser = make_parser(aug_type='panoptic_deeplab_policy', dtype='bfloat16')
    image, labels = next(iter(dataset([scene()]).map(
        parser.parse_fn(is_training=True))))
    assert image.dtype == tf.bfloat16 and image.shape == (64, 64, 3)
    assert labels['num_instances'].numpy() == 2
    with pytest.raises(ValueError, match='misalign'):
        make_parser(aug_type='v0')


def test_padded_size_rounds_up_to_max_level():
    parser = make_parser(output_size=[100, 70], max_level=5)
    assert parser.padded_size == [128, 96]
    image, labels = parser.parse_fn(is_training=False)(
        {k: tf.constant(v) for k, v in scene().items()})
    assert image.shape == (128, 96, 3)
    assert labels['heatmaps'].shape == (16, 12, 3)
