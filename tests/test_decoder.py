"""Tests for the record decoders (TFRecord and tfds coco/2017_panoptic)."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from maskconver_tf.data.descriptor import DatasetDescriptor
from maskconver_tf.dataloaders import decoder as decoder_lib

# Non-contiguous ids: tfds labels 0, 1, 2 -> ids 3, 7, 20.
CATEGORIES = [
    {'id': 20, 'name': 'grass', 'isthing': 0},
    {'id': 3, 'name': 'cat', 'isthing': 1},
    {'id': 7, 'name': 'dog', 'isthing': 1},
]


def png(array):
    out = io.BytesIO()
    Image.fromarray(array).save(out, format='PNG')
    return out.getvalue()


def jpeg(array):
    out = io.BytesIO()
    Image.fromarray(array).save(out, format='JPEG')
    return out.getvalue()


def bytes_feature(*values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def make_example(masks, image=None, **extra):
    image = np.zeros([3, 4, 3], np.uint8) if image is None else image
    feature = {
        'image/encoded': bytes_feature(jpeg(image)),
        'image/source_id': bytes_feature(b'17'),
        'image/height': tf.train.Feature(
            int64_list=tf.train.Int64List(value=[image.shape[0]])),
        'image/width': tf.train.Feature(
            int64_list=tf.train.Int64List(value=[image.shape[1]])),
    }
    feature.update({k: bytes_feature(png(v)) for k, v in masks.items()})
    feature.update(extra)
    return tf.train.Example(
        features=tf.train.Features(feature=feature)).SerializeToString()


# PNG bit depth ---------------------------------------------------------------
def test_decode_png_mask_8_and_16_bit_without_rescaling():
    small = np.array([[0, 7], [255, 1]], np.uint8)
    wide = np.array([[0, 300], [65535, 7]], np.uint16)
    assert int(decoder_lib.png_bit_depth(png(small))) == 8
    assert int(decoder_lib.png_bit_depth(png(wide))) == 16
    # The trap this guards against: uint16 decoding rescales 8-bit data.
    assert tf.io.decode_png(png(small), 1, tf.uint16).numpy()[0, 1, 0] == 1799
    np.testing.assert_array_equal(decoder_lib.decode_png_mask(png(small)), small)
    np.testing.assert_array_equal(decoder_lib.decode_png_mask(png(wide)), wide)

    @tf.function
    def graph_decode(data):
        return decoder_lib.decode_png_mask(data)
    for array in (small, wide):
        out = graph_decode(tf.constant(png(array)))
        assert out.dtype == tf.int32 and out.shape.rank == 2
        np.testing.assert_array_equal(out, array)


# TFRecord decoder ------------------------------------------------------------
def test_tf_example_decoder_outputs_and_dtypes():
    category = np.array([[0, 3, 3, 20], [7, 7, 20, 20], [0, 0, 20, 20]], np.uint8)
    instance = np.array([[0, 1, 1, 0], [2, 2, 0, 0], [0, 0, 0, 0]], np.uint8)
    record = make_example(
        {'image/panoptic/category_mask': category,
         'image/panoptic/instance_mask': instance,
         'image/segmentation/class/encoded': (category > 0).astype(np.uint8)},
        **{'image/object/class/label': tf.train.Feature(
               int64_list=tf.train.Int64List(value=[3, 7])),
           'image/object/is_crowd': tf.train.Feature(
               int64_list=tf.train.Int64List(value=[0, 1])),
           'image/object/area': tf.train.Feature(
               float_list=tf.train.FloatList(value=[2.0, 2.0])),
           'image/object/bbox/ymin': tf.train.Feature(
               float_list=tf.train.FloatList(value=[0.0, 1 / 3])),
           'image/object/bbox/xmin': tf.train.Feature(
               float_list=tf.train.FloatList(value=[0.25, 0.0])),
           'image/object/bbox/ymax': tf.train.Feature(
               float_list=tf.train.FloatList(value=[1 / 3, 2 / 3])),
           'image/object/bbox/xmax': tf.train.Feature(
               float_list=tf.train.FloatList(value=[0.75, 0.5]))})
    dec = decoder_lib.build_decoder('tfrecord', include_semantic_mask=True)
    out = tf.data.Dataset.from_tensors(record).map(dec.decode).get_single_element()
    assert out['image'].dtype == tf.uint8 and out['image'].shape == (3, 4, 3)
    for key in ('category_mask', 'instance_mask', 'semantic_mask',
                'groundtruth_classes', 'height', 'width'):
        assert out[key].dtype == tf.int32, key
    np.testing.assert_array_equal(out['category_mask'], category)
    np.testing.assert_array_equal(out['instance_mask'], instance)
    np.testing.assert_array_equal(out['semantic_mask'], category > 0)
    assert out['source_id'].numpy() == b'17'
    assert (int(out['height']), int(out['width'])) == (3, 4)
    np.testing.assert_array_equal(out['groundtruth_classes'], [3, 7])
    np.testing.assert_array_equal(out['groundtruth_is_crowd'], [False, True])
    np.testing.assert_allclose(out['groundtruth_boxes'],
                               [[0, 0.25, 1 / 3, 0.75], [1 / 3, 0, 2 / 3, 0.5]])


def test_tf_example_decoder_configurable_keys_and_missing_key():
    cat = np.array([[1, 2]], np.uint8)
    inst = np.array([[0, 300]], np.uint16)
    record = make_example({'my/cat': cat, 'my/inst': inst},
                          image=np.zeros([1, 2, 3], np.uint8))
    dec = decoder_lib.TfExampleDecoder(panoptic_category_mask_key='my/cat',
                                       panoptic_instance_mask_key='my/inst')
    out = dec.decode(tf.constant(record))
    np.testing.assert_array_equal(out['category_mask'], cat)
    np.testing.assert_array_equal(out['instance_mask'], inst)
    assert out['groundtruth_classes'].shape == (0,)
    # Default keys are absent: a loud error, never an all-void mask.
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match='image/panoptic/category_mask'):
        decoder_lib.TfExampleDecoder().decode(tf.constant(record))


# tfds decoder ----------------------------------------------------------------
def tiny_descriptor():
    return DatasetDescriptor.from_categories(CATEGORIES)


def handmade_tfds_example():
    """4x5 panoptic image with ids 1 (R), 512 (G=2), 65541 (B=1, R=5), 9."""
    ids = np.array([[1, 1, 512, 512, 0],
                    [1, 1, 512, 512, 9],
                    [65541, 65541, 65541, 65541, 65541],
                    [65541, 65541, 0, 9, 9]], np.int64)
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1)
    # Objects deliberately not sorted by id; id 9 has no object (-> void),
    # object 4 (id 33) has no pixels.
    objects = {
        'id': np.array([65541, 512, 1, 33], np.int64),
        'label': np.array([2, 1, 0, 0], np.int64),      # grass, dog, cat, cat
        'is_crowd': np.array([False, True, False, False]),
        'area': np.array([7, 4, 4, 0], np.int64),
        'bbox': np.array([[.5, 0, 1, 1], [0, .4, .5, .8], [0, 0, .5, .4],
                          [0, 0, .1, .1]], np.float32),
    }
    return {
        'image': tf.constant(np.full([4, 5, 3], 9, np.uint8)),
        'image/id': tf.constant(4242, tf.int64),
        'panoptic_image': tf.constant(rgb.astype(np.uint8)),
        'panoptic_objects': {k: tf.constant(v) for k, v in objects.items()},
    }, ids


@pytest.mark.parametrize('skip_crowd', [False, True])
def test_tfds_decoder_handmade_example(skip_crowd):
    example, ids = handmade_tfds_example()
    dec = decoder_lib.build_decoder('tfds', tiny_descriptor(),
                                    skip_crowd=skip_crowd)
    out = tf.function(dec.decode)(example)
    dog = 0 if skip_crowd else 7
    dog_instance = 0 if skip_crowd else 2
    expected_category = np.select(
        [ids == 65541, ids == 512, ids == 1], [20, dog, 3], 0)
    expected_instance = np.select([ids == 512, ids == 1], [dog_instance, 3], 0)
    np.testing.assert_array_equal(out['category_mask'], expected_category)
    np.testing.assert_array_equal(out['instance_mask'], expected_instance)
    assert out['category_mask'].dtype == tf.int32
    assert out['instance_mask'].dtype == tf.int32
    np.testing.assert_array_equal(out['groundtruth_classes'], [20, 7, 3, 3])
    np.testing.assert_array_equal(out['groundtruth_is_crowd'],
                                  [False, True, False, False])
    np.testing.assert_allclose(out['groundtruth_area'], [7, 4, 4, 0])
    assert out['groundtruth_boxes'].shape == (4, 4)
    assert out['source_id'].numpy() == b'4242'
    assert (int(out['height']), int(out['width'])) == (4, 5)
    assert out['image'].dtype == tf.uint8 and out['image'].shape == (4, 5, 3)


def test_tfds_decoder_no_objects_and_validation():
    example, _ = handmade_tfds_example()
    empty = dict(example)
    empty['panoptic_objects'] = {
        'id': tf.zeros([0], tf.int64), 'label': tf.zeros([0], tf.int64),
        'is_crowd': tf.zeros([0], tf.bool), 'area': tf.zeros([0], tf.int64),
        'bbox': tf.zeros([0, 4], tf.float32)}
    out = decoder_lib.TfdsPanopticDecoder(tiny_descriptor()).decode(empty)
    assert int(tf.reduce_max(out['category_mask'])) == 0
    assert int(tf.reduce_max(out['instance_mask'])) == 0
    assert out['groundtruth_boxes'].shape == (0, 4)

    bad = dict(example)
    bad['panoptic_image'] = example['panoptic_image'][:, :4]
    with pytest.raises(tf.errors.InvalidArgumentError, match='differ in size'):
        decoder_lib.TfdsPanopticDecoder(tiny_descriptor()).decode(bad)
    bad = dict(example)
    bad['panoptic_objects'] = dict(example['panoptic_objects'])
    bad['panoptic_objects']['label'] = example['panoptic_objects']['label'][:2]
    with pytest.raises(tf.errors.InvalidArgumentError, match='length'):
        decoder_lib.TfdsPanopticDecoder(tiny_descriptor()).decode(bad)
    # Without validation the object fields are cut to the shortest.
    out = decoder_lib.TfdsPanopticDecoder(tiny_descriptor(),
                                          validate=False).decode(bad)
    np.testing.assert_array_equal(out['groundtruth_classes'], [20, 7])


def test_tfds_label_order_is_ascending_coco_ids(fixtures_dir):
    """tfds names labels from the JSON categories in file order; COCO's file
    lists them by ascending id, which is the descriptor's order."""
    path = fixtures_dir / 'coco_panoptic_sample' / 'panoptic_coco_categories.json'
    file_order = json.loads(path.read_text())
    ids = [c['id'] for c in file_order]
    assert ids == sorted(ids)
    coco = DatasetDescriptor.builtin('coco')
    assert decoder_lib.verify_tfds_label_names(
        [c['name'] for c in file_order], coco) is True
    dec = decoder_lib.TfdsPanopticDecoder(coco)
    np.testing.assert_array_equal(dec._label_to_id.numpy(), ids)
    swapped = [c['name'] for c in file_order]
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(ValueError, match="tfds label 0 is 'bicycle'"):
        decoder_lib.verify_tfds_label_names(swapped, coco)
    # Unnamed labels (tfds mocks) cannot be checked.
    assert decoder_lib.verify_tfds_label_names(
        [str(i) for i in range(133)], coco) is False
    with pytest.raises(ValueError, match='133 categories'):
        decoder_lib.verify_tfds_label_names(['a'], coco)


def test_tfds_mock_pipeline_runs_offline():
    import tensorflow_datasets as tfds
    coco = DatasetDescriptor.builtin('coco')
    with tfds.testing.mock_data(num_examples=3):
        builder = tfds.builder('coco/2017_panoptic')
        # Mock examples are not self-consistent (sizes, field lengths).
        dec = decoder_lib.TfdsPanopticDecoder.from_builder(
            builder, coco, validate=False, skip_crowd=True)
        ds = tfds.load('coco/2017_panoptic', split='train').map(dec.decode)
        outs = list(ds.take(3))
    assert len(outs) == 3
    known = set(coco.ids) | {0}
    for out in outs:
        assert out['image'].dtype == tf.uint8 and out['image'].shape[-1] == 3
        assert out['category_mask'].dtype == tf.int32
        assert out['category_mask'].shape == out['instance_mask'].shape
        assert set(np.unique(out['category_mask'])) <= known
        assert set(out['groundtruth_classes'].numpy()) <= set(coco.ids)
        n = out['groundtruth_classes'].shape[0]
        assert out['groundtruth_boxes'].shape == (n, 4)
        assert out['source_id'].dtype == tf.string


def test_build_decoder_errors():
    with pytest.raises(ValueError, match='needs a DatasetDescriptor'):
        decoder_lib.build_decoder('tfds')
    with pytest.raises(ValueError, match="unknown decoder source 'x'"):
        decoder_lib.build_decoder('x')
