"""SavedModel export: signatures, output contract, numerics vs Keras."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from maskconver_tf import registry_imports  # noqa: F401
from maskconver_tf.ops import preprocess
from maskconver_tf.serving import export_module
from maskconver_tf.serving import graph_rewrites
from maskconver_tf.serving import tflite_conversion
from maskconver_tf.tasks.maskconver import descriptor_for

import export_test_utils

SIZE = 64


@pytest.fixture(scope='module')
def params():
    return export_test_utils.shapes_params(SIZE)


@pytest.fixture(scope='module')
def model(params):
    return export_test_utils.shapes_model(params)


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
    and folds the mask-feature classifier (graph_rewrites.sparse_heads);
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
        if graph_rewrites.is_batch_norm(layer):
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
