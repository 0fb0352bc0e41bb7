"""The flagship (multi-scale) model through every serving path.

A narrow `maskconver_r50_convnext_unet_shapes` (ResNet-18 UNet, 32-wide FPN
and heads, same layer types: resnet_unet, maskconver_fpn concat + separable
7x7 + LayerNorm, shared 7x7 heads with per-level norms, pyramid fusion) at
128 px, made non-trivial like `inference_test_utils.make_model`:
- Keras vs SavedModel vs float .tflite on the same images;
- every quant mode converts with builtin ops only and the output contract;
- `inference.load_predictor` on its checkpoint, SavedModel and .tflite.
"""

import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.core import exp_factory
from official.core import train_utils

from maskconver_tf import inference
from maskconver_tf import registry_imports  # noqa: F401
from maskconver_tf.ops import preprocess
from maskconver_tf.serving import export_module
from maskconver_tf.serving import tflite_conversion as tc

import export_test_utils
import inference_test_utils

EXPERIMENT = 'maskconver_r50_convnext_unet_shapes'
SIZE = 128
K = 8
NARROW = {'num_convs': 1, 'num_filters': 32}
OVERRIDE = {'task': {'model': {
    'num_instances': K, 'embedding_size': 16,
    'backbone': {'resnet_unet': {'model_id': 18,
                                 'upsample_repeats': [1, 1, 1],
                                 'upsample_filters': [32, 32, 32]}},
    'decoder': {'maskconver_fpn': {'num_filters': 32}},
    'class_head': NARROW, 'center_head': NARROW, 'mask_feature_head': NARROW,
    'mask_embedding': {'mlp_hidden_size': 32},
    # Random weights score ~0.1 (the class prior): let proposals through.
    'panoptic_generator': {'object_mask_threshold': 0.01,
                           'overlap_threshold': 0.2,
                           'small_area_threshold': 0}}}}


def _model(params, images):
    """Random weights; BN statistics of real images, louder embeddings."""
    from maskconver_tf.modeling import factory
    from maskconver_tf.tasks.maskconver import descriptor_for
    tf_keras.utils.set_random_seed(5)
    model = factory.build_maskconver_model(
        tf_keras.layers.InputSpec(shape=[None, SIZE, SIZE, 3]),
        params.task.model, descriptor=descriptor_for(params.task))
    norms = [l for l in model.submodules
             if isinstance(l, tf_keras.layers.BatchNormalization)]
    for l in norms:
        l.momentum = 0.0
    model(images, center_indices=tf.zeros([len(images), K], tf.int32),
          classes=tf.zeros([len(images), K], tf.int32), training=True)
    for l in norms:
        l.momentum = params.task.model.norm_activation.norm_momentum
    for v in model.variables:
        if v.name.endswith('classifier/kernel:0') and (
                'mask_feature_head' in v.name or 'center_head' in v.name):
            v.assign(v * inference_test_utils.KERNEL_SCALE)
    return model


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp('flagship')
    _, raw = inference_test_utils.shapes_images(str(root / 'shapes'), num=4,
                                                size=SIZE, seed=2)
    images = np.stack([np.asarray(preprocess.preprocess_image(
        im, (SIZE, SIZE))[0]) for im in raw])
    params = exp_factory.get_exp_config(EXPERIMENT)
    params.override(OVERRIDE, is_strict=True)
    model = _model(params, images)
    model_dir = str(root / 'model_dir')
    checkpoint = tf.train.CheckpointManager(
        tf.train.Checkpoint(model=model), model_dir, 1).save(checkpoint_number=3)
    train_utils.serialize_config(params, model_dir)
    module = export_module.export_saved_model(
        params, str(root / 'export'), checkpoint_path=checkpoint,
        batch_size=1, input_type='tflite', include_logits=True,
        experiment=EXPERIMENT)
    meta = json.loads((root / 'export' / export_module.SIDECAR_NAME)
                      .read_text())
    tflite = str(root / 'float.tflite')
    tc.export_tflite(str(root / 'export' / 'saved_model'), tflite,
                     base_metadata=meta)
    return dict(root=root, module=module, images=images, raw=raw, meta=meta,
                model_dir=model_dir, tflite=tflite,
                saved_model=str(root / 'export' / 'saved_model'))


def test_keras_saved_model_and_float_tflite_agree(exported):
    report = export_test_utils.run_all(
        exported['module'], exported['saved_model'], exported['tflite'],
        exported['images'])
    for what in ('saved_model', 'tflite'):
        assert report[what]['mask_logits'] <= 1e-4, report
        assert report[what]['category_mask'] >= 0.999, report
    keras = export_test_utils.keras_outputs(exported['module'],
                                            exported['images'])
    # Not a trivial map: segments the agreement above had to reproduce.
    assert (keras['category_mask'] > 0).mean() > 0.01
    assert len(np.unique(keras['instance_mask'])) >= 2
    assert (keras['scores'] > 0.01).sum() >= 2
    assert not tc.custom_ops(tc.list_ops(exported['tflite']))


@pytest.mark.parametrize('quant_type', tc.QUANT_TYPES)
def test_every_mode_converts_builtins_only(exported, quant_type):
    path = str(exported['root'] / f'{quant_type}.tflite')
    calibration = (list(exported['images'])
                   if quant_type in tc.INT8_TYPES else None)
    tc.export_tflite(exported['saved_model'], path, quant_type=quant_type,
                     calibration=calibration,
                     base_metadata=exported['meta'])
    ops = tc.list_ops(path)
    assert not tc.custom_ops(ops)
    # The default delegate (XNNPACK), as users run it: it refuses int8
    # tiles whose calibrated range is empty (the 1x1 / 2x2 top levels).
    interpreter = tc.make_interpreter(path)
    names = [d['name'] for d in interpreter.get_output_details()]
    assert names[:4] == list(export_module.OUTPUT_ORDER)
    out = tc.run_tflite(interpreter, exported['images'][:1])
    assert out['category_mask'].shape == (1, SIZE, SIZE)
    assert out['classes'].shape == (1, K) and out['scores'].dtype == np.float32
    if quant_type in tc.INT8_TYPES:
        assert any('int8' in op.weights for op in ops
                   if op.name == 'CONV_2D')


@pytest.mark.parametrize('backend', ['checkpoint', 'saved_model', 'tflite'])
def test_load_predictor_every_backend(exported, backend):
    path = {'checkpoint': exported['model_dir'],
            'saved_model': exported['saved_model'],
            'tflite': exported['tflite']}[backend]
    predictor = inference.load_predictor(path)
    assert predictor.backend == backend
    image = exported['raw'][0]
    result = predictor.predict(image)
    assert result['category_mask'].shape == image.shape[:2]
    assert result['category_mask'].dtype == np.int32
    assert set(np.unique(result['category_mask'])) <= (
        {0} | set(predictor.descriptor.ids))
    if backend == 'checkpoint':
        # The restored model predicts what the exported graph does.
        lite = inference.load_predictor(exported['tflite']).predict(image)
        assert export_test_utils.agreement(
            result['category_mask'], lite['category_mask']) >= 0.99
