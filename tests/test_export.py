"""SavedModel export: signatures, output contract, numerics vs Keras."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from PIL import Image

from maskconver_tf import registry_imports  # noqa: F401
from maskconver_tf.modeling.layers import post_processing
from maskconver_tf.ops import preprocess
from maskconver_tf.serving import export_module
from maskconver_tf.serving import tflite_conversion
from maskconver_tf.tasks.maskconver import descriptor_for

import export_test_utils

SIZE = 64


@pytest.fixture(scope='module')
def params():
    p = export_module.load_params('maskconver_shapes')
    p.task.model.input_size = [SIZE, SIZE, 3]
    p.task.model.panoptic_generator.output_size = []
    return p


@pytest.fixture(scope='module')
def model(params):
    tf.keras.utils.set_random_seed(3)
    module = export_module.MaskConverModule(
        params, batch_size=None, input_image_size=[SIZE, SIZE])
    return module.model


def _images(seed, shapes):
    rng = np.random.RandomState(seed)
    return [rng.randint(0, 256, s + (3,)).astype(np.uint8) for s in shapes]


def _keras_reference(model, image):
    """model(preprocessed, image_info) for one uint8 image -> numpy dict."""
    x, info = preprocess.preprocess_image(image, (SIZE, SIZE))
    out = model(x[tf.newaxis], image_info=info[tf.newaxis], training=False)
    out = {k: np.asarray(v) for k, v in out.items()}
    out['image_info'] = np.asarray(info)[np.newaxis]
    return out


def test_image_tensor_matches_keras_and_writes_sidecar(params, model,
                                                       tmp_path):
    module = export_module.export_saved_model(
        params, str(tmp_path), batch_size=None, input_type='image_tensor',
        include_logits=True, model=model, experiment='maskconver_shapes')
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'checkpoint', 'maskconver_export.json', 'params.yaml', 'saved_model']
    fn = tf.saved_model.load(str(tmp_path / 'saved_model')).signatures[
        'serving_default']
    spec = fn.structured_input_signature[1]['inputs']
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, None,
                                                               None, 3]
    images = _images(0, [(48, 80), (48, 80)])
    got = {k: np.asarray(v) for k, v in fn(inputs=np.stack(images)).items()}
    expected_keys = {'category_mask', 'instance_mask', 'classes', 'scores',
                     'image_info', 'class_heatmaps', 'mask_logits'}
    assert set(got) == expected_keys
    for i, image in enumerate(images):
        ref = _keras_reference(model, image)
        one = {k: v[i:i + 1] for k, v in got.items()}
        export_test_utils.compare_outputs(
            {k: ref[k] for k in expected_keys}, one, what='image_tensor')
        np.testing.assert_allclose(one['image_info'], ref['image_info'])
        np.testing.assert_array_equal(one['classes'], ref['classes'])
    for key, dtype in export_module.OUTPUT_DTYPES.items():
        assert got[key].dtype == dtype.as_numpy_dtype, key
    meta = json.loads((tmp_path / 'maskconver_export.json').read_text())
    assert meta == module.metadata('maskconver_shapes')
    assert meta['labels'] == descriptor_for(params.task).to_coco_categories()
    assert meta['input']['mean_rgb'] == pytest.approx(
        [123.675, 116.28, 103.53])
    assert meta['output_order'][:4] == list(export_module.OUTPUT_ORDER)
    assert meta['outputs']['category_mask'] == {'dtype': 'int32',
                                                'shape': [None, SIZE, SIZE]}


@pytest.mark.parametrize('input_type', ['image_bytes', 'tf_example'])
def test_encoded_inputs_mixed_sizes(params, model, tmp_path, input_type):
    images = _images(1, [(40, 64), (64, 30)])
    encoded = []
    for image in images:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format='PNG')
        data = buf.getvalue()
        if input_type == 'tf_example':
            data = tf.train.Example(features=tf.train.Features(feature={
                'image/encoded': tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[data]))
            })).SerializeToString()
        encoded.append(data)
    export_module.export_saved_model(params, str(tmp_path), batch_size=None,
                                     input_type=input_type, model=model)
    fn = tf.saved_model.load(str(tmp_path / 'saved_model')).signatures[
        'serving_default']
    got = {k: np.asarray(v) for k, v in fn(inputs=tf.constant(encoded)).items()}
    for i, image in enumerate(images):
        ref = _keras_reference(model, image)
        export_test_utils.compare_outputs(
            {k: ref[k] for k in export_module.OUTPUT_ORDER},
            {k: v[i:i + 1] for k, v in got.items()}, what=input_type)
        np.testing.assert_allclose(got['image_info'][i], ref['image_info'][0])
        h, w = image.shape[:2]
        # Canvas pixels outside the original image are void.
        assert not got['category_mask'][i, h:, :].any()
        assert not got['category_mask'][i, :, w:].any()


def test_keras_saved_model_and_float_tflite_agree(params, model, tmp_path):
    module = export_module.export_saved_model(
        params, str(tmp_path), batch_size=1, input_type='tflite',
        include_logits=True, model=model)
    rng = np.random.RandomState(5)
    images = np.stack([np.asarray(preprocess.preprocess_image(
        rng.randint(0, 256, (SIZE, SIZE, 3)).astype(np.uint8),
        (SIZE, SIZE))[0]) for _ in range(3)])
    meta = json.loads((tmp_path / 'maskconver_export.json').read_text())
    tflite_path = str(tmp_path / 'model.tflite')
    tflite_conversion.export_tflite(str(tmp_path / 'saved_model'),
                                    tflite_path, base_metadata=meta)
    report = export_test_utils.run_all(module, str(tmp_path / 'saved_model'),
                                       tflite_path, images)
    for what in ('saved_model', 'tflite'):
        assert report[what]['mask_logits'] <= 1e-4
        assert report[what]['category_mask'] >= 0.999
    # Keras forward == the plain model call on the same input.
    direct = model(images[:1], training=False)
    np.testing.assert_allclose(
        export_test_utils.keras_outputs(module, images[:1])['mask_logits'],
        direct['mask_logits'], atol=1e-5)
    interpreter = tflite_conversion.make_interpreter(tflite_path)
    assert [d['name'] for d in interpreter.get_output_details()] == (
        list(export_module.OUTPUT_ORDER) + list(export_module.LOGIT_OUTPUTS))
    # The 6 head 7x7 depthwise convs are traced as 3 tiles each.
    assert module.metadata()['split_depthwise']
    ops = tflite_conversion.list_ops(tflite_path)
    assert sum(op.name == 'DEPTHWISE_CONV_2D' for op in ops) == 19 + 6 * 3


def test_sparse_heads_match_the_dense_export(params):
    """The default export runs the center-embedding tail at the K proposals
    and folds the mask-feature classifier (MaskConverModel.sparse_inference);
    it gives the dense graph's outputs, with activations that do not vanish
    (BatchNorm statistics of the test images)."""
    tf.keras.utils.set_random_seed(4)
    dense = export_module.MaskConverModule(
        params, batch_size=1, input_image_size=[SIZE, SIZE],
        input_type='tflite', include_logits=True, sparse_heads=False)
    sparse = export_module.MaskConverModule(
        params, batch_size=1, input_image_size=[SIZE, SIZE],
        input_type='tflite', include_logits=True, model=dense.model)
    assert sparse.metadata()['sparse_heads']
    assert not dense.metadata()['sparse_heads']
    rng = np.random.RandomState(6)
    images = np.stack([np.asarray(preprocess.preprocess_image(
        rng.randint(0, 256, (SIZE, SIZE, 3)).astype(np.uint8),
        (SIZE, SIZE))[0]) for _ in range(4)])
    for layer in dense.model.submodules:
        if export_module.is_batch_norm(layer):
            layer.momentum = 0.0
    dense.model.dense_outputs(tf.constant(images), training=True)
    want = export_test_utils.keras_outputs(dense, images)
    got = export_test_utils.keras_outputs(sparse, images)
    assert np.abs(want['mask_logits']).max() > 1.0
    report = export_test_utils.compare_outputs(want, got, logits_atol=1e-4,
                                               min_agreement=1.0)
    assert report['category_mask'] == 1.0
    np.testing.assert_array_equal(got['classes'], want['classes'])


def test_sparse_heads_refused_for_a_model_without_pointwise_tails(params):
    p = params.replace(task={'model': {'mask_feature_head': {
        'upsample_factor': 2}}})
    with pytest.raises(ValueError, match='sparse_heads'):
        export_module.MaskConverModule(p, batch_size=1,
                                       input_image_size=[SIZE, SIZE],
                                       input_type='tflite', sparse_heads=True)
    module = export_module.MaskConverModule(p, batch_size=1,
                                            input_image_size=[SIZE, SIZE],
                                            input_type='tflite')
    assert not module.metadata()['sparse_heads']


def test_bad_input_size_and_batch_refused(params):
    with pytest.raises(ValueError, match='multiple of 16'):
        export_module.MaskConverModule(params, batch_size=1,
                                       input_image_size=[72, 64])
    with pytest.raises(ValueError, match='fixed batch size'):
        export_module.MaskConverModule(params, batch_size=None,
                                       input_image_size=[64, 64],
                                       input_type='tflite')
    with pytest.raises(ValueError, match='input_type'):
        export_module.MaskConverModule(params, batch_size=1,
                                       input_image_size=[64, 64],
                                       input_type='jpeg')


def test_merge_at_stride_is_coarse_merge_upsampled(model):
    rng = np.random.RandomState(2)
    logits = tf.constant(rng.randn(1, 8, 8, 50) * 3, tf.float32)
    classes = tf.constant(rng.randint(0, 8, (1, 50)), tf.int32)
    scores = tf.constant(np.sort(rng.rand(1, 50))[:, ::-1].copy(), tf.float32)
    config = model.panoptic_merger.get_config()
    kwargs = {k: config[k] for k in (
        'is_thing_channel', 'channel_to_id', 'object_mask_threshold',
        'overlap_threshold', 'void_prob_threshold')}
    exact = export_module.merge_at_stride(model, logits, classes, scores,
                                          (SIZE, SIZE), 1)
    ref = post_processing.panoptic_merge(
        logits, classes, scores, output_size=(SIZE, SIZE),
        small_area_threshold=config['small_area_threshold'], **kwargs)
    for key in ref:
        np.testing.assert_array_equal(exact[key], ref[key])
    coarse = export_module.merge_at_stride(model, logits, classes, scores,
                                           (SIZE, SIZE), 4)
    small = post_processing.panoptic_merge(
        logits, classes, scores, output_size=(SIZE // 4, SIZE // 4),
        small_area_threshold=config['small_area_threshold'] // 16, **kwargs)
    for key in ('category_mask', 'instance_mask'):
        up = np.repeat(np.repeat(np.asarray(small[key]), 4, 1), 4, 2)
        np.testing.assert_array_equal(coarse[key], up)
    np.testing.assert_array_equal(coarse['classes'], small['classes'])
    with pytest.raises(ValueError, match='divide'):
        export_module.merge_at_stride(model, logits, classes, scores,
                                      (SIZE, SIZE), 3)


@pytest.mark.parametrize('size', [(8, 12), (12, 12), (5, 7), (3, 4)])
def test_nearest_upsample_reads_the_floor_cell(size):
    # 3 x 4 int map; canvas pixel i reads cell min(h - 1, i * h // H): the
    # TILE path (integer factors) and the GATHER path give the same rule.
    mask = tf.reshape(tf.range(24, dtype=tf.int32), [2, 3, 4])
    got = export_module._nearest_upsample(mask, size).numpy()
    rows = [min(2, i * 3 // size[0]) for i in range(size[0])]
    cols = [min(3, j * 4 // size[1]) for j in range(size[1])]
    np.testing.assert_array_equal(got, mask.numpy()[:, rows][:, :, cols])
    if size == (12, 12):  # factors 4 and 3, hand-checked corner
        assert got[1, 11, 11] == 23 and got[1, 4, 3] == 17  # cell (1, 1)


@pytest.mark.parametrize('kernel_size,max_taps,num_tiles', [
    (7, 25, 3), (7, 9, 7), (9, 25, 5), (5, 4, 9), (30, 25, 36)])
def test_split_depthwise_conv_equals_the_conv(kernel_size, max_taps,
                                              num_tiles):
    tiles = export_module.depthwise_tiles(kernel_size, kernel_size, max_taps)
    assert len(tiles) == num_tiles
    assert all((r1 - r0) * (c1 - c0) <= max_taps for r0, r1, c0, c1 in tiles)
    rng = np.random.RandomState(kernel_size)
    x = tf.constant(rng.randn(2, 12, 10, 6), tf.float32)
    kernel = tf.constant(rng.randn(kernel_size, kernel_size, 6, 2),
                         tf.float32)
    want = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], 'SAME')
    got = export_module.split_depthwise_conv(x, kernel, max_taps)
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize('h,w,taps,top,left', [
    (1, 1, (1, 1), 0, 0), (2, 2, (3, 3), 1, 1), (1, 3, (1, 5), 0, 2),
    (3, 12, (5, 7), 2, 3), (4, 4, (7, 7), 3, 3)])
def test_split_depthwise_conv_on_inputs_smaller_than_the_kernel(h, w, taps,
                                                                top, left):
    """Top FPN levels: only taps within reach of the image stay (exactly)."""
    rng = np.random.RandomState(h * 10 + w)
    kernel = tf.constant(rng.randn(7, 7, 4, 1), tf.float32)
    cropped, got_top, got_left = export_module.reachable_taps(
        kernel, 3, 3, h, w)
    assert tuple(cropped.shape[:2]) == taps
    assert (got_top, got_left) == (top, left)
    # The crop is the centre of the kernel around the (3, 3) tap.
    np.testing.assert_array_equal(
        cropped, kernel[3 - top:3 - top + taps[0], 3 - left:3 - left + taps[1]])
    x = tf.constant(rng.randn(2, h, w, 4), tf.float32)
    bias = tf.constant(rng.randn(4), tf.float32)
    want = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], 'SAME') + bias
    got = export_module.split_depthwise_conv(x, kernel, 25, bias)
    np.testing.assert_allclose(got, want, atol=1e-4)


def _randomize_batch_norms(model, seed):
    """Gives every BatchNorm statistics far from the identity; returns the
    old values. Channel scales spread over two decades, as in trained heads."""
    rng = np.random.RandomState(seed)
    saved = []
    for layer in model.submodules:
        if export_module.is_batch_norm(layer):
            for var in layer.weights:
                saved.append((var, var.numpy()))
                shape = var.shape
                if 'variance' in var.name:
                    var.assign(10.0 ** rng.uniform(-2, 1, shape))
                elif 'gamma' in var.name:
                    var.assign(rng.uniform(0.5, 2.0, shape))
                else:
                    var.assign(rng.randn(*shape))
    assert saved
    return saved


def test_split_large_depthwise_scope_keeps_the_function(model):
    x = tf.constant(np.random.RandomState(0).randn(1, SIZE, SIZE, 3),
                    tf.float32)
    saved = _randomize_batch_norms(model, 1)
    try:
        want = model(x, training=False)
        with export_module.split_large_depthwise(model) as count:
            # 3 heads x 2 towers of 7x7; ASPP's dilated 3x3 are left alone.
            assert count == 6
            # Each split conv carries the BatchNorm after it.
            folded = [layer for layer in model.submodules
                      if 'tower_depthwise_norm' in layer.name
                      and 'call' in vars(layer)]
            assert len(folded) == 6
            got = model(x, training=False)
    finally:
        for var, value in saved:
            var.assign(value)
    for key in ('class_heatmaps', 'mask_logits'):
        scale = np.abs(np.asarray(want[key])).max()
        np.testing.assert_allclose(got[key], want[key], atol=1e-5 * scale)
    # Restored: no layer keeps the patched call.
    assert not any('call' in vars(layer) for layer in model.submodules)


def test_fold_batch_norm_matches_depthwise_then_norm():
    rng = np.random.RandomState(2)
    conv = tf_keras.layers.DepthwiseConv2D(7, padding='same', use_bias=False,
                                           depth_multiplier=2)
    norm = tf_keras.layers.BatchNormalization(epsilon=1e-3)
    x = tf.constant(rng.randn(1, 9, 11, 3), tf.float32)
    norm(conv(x))
    norm.set_weights([rng.uniform(0.5, 2, 6), rng.randn(6), rng.randn(6),
                      10.0 ** rng.uniform(-2, 1, 6)])
    want = norm(conv(x), training=False)
    kernel, bias = export_module.fold_batch_norm(conv, norm)
    got = export_module.split_depthwise_conv(x, kernel, 25, bias)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match='cannot fold'):
        export_module.fold_batch_norm(
            conv, tf_keras.layers.LayerNormalization())


