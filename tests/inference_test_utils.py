"""One small MaskConver model saved as a checkpoint, a SavedModel and a
float .tflite, shared by the inference / predict / evaluate tests.

The model is the shapes experiment at 64 px, randomly initialised, then made
non-trivial: batch-norm statistics are set from a batch of shapes images
(random init otherwise shrinks activations to ~1e-10 through the backbone)
and the center / mask-feature classifier kernels are scaled up, so several
proposals pass the thresholds and the maps hold more than one segment.
Artifacts are built once per test session (module-level cache).
"""

import glob
import json
import os

import numpy as np
from PIL import Image

EXPERIMENT = 'maskconver_shapes'
INPUT_SIZE = 64
# Panoptic canvas of the SavedModel (original-image pixels): large enough
# for the odd-size test images.
CANVAS = 128
PARAMS_OVERRIDE = {'task': {'model': {
    'input_size': [INPUT_SIZE, INPUT_SIZE, 3],
    'panoptic_generator': {'output_size': [CANVAS, CANVAS],
                           'overlap_threshold': 0.2,
                           'small_area_threshold': 0}}}}
PARAMS_OVERRIDE_STR = json.dumps(PARAMS_OVERRIDE)
KERNEL_SCALE = 6.0
SEED = 3

_CACHE = {}


def shapes_images(root, num=3, size=INPUT_SIZE, seed=0):
    """Generates a shapes set; returns (json path, [uint8 [H, W, 3]])."""
    from maskconver_tf.data import shapes
    json_path = shapes.generate_dataset(root, num, image_size=size, seed=seed)
    files = sorted(glob.glob(os.path.join(root, 'images', '*.jpg')))
    return json_path, [np.asarray(Image.open(f).convert('RGB'))
                       for f in files]


def make_params():
    import maskconver_tf.registry_imports  # noqa: F401
    from official.core import exp_factory
    params = exp_factory.get_exp_config(EXPERIMENT)
    params.override(PARAMS_OVERRIDE, is_strict=True)
    return params


def make_model(params, images):
    """The non-trivial random model (see module docstring)."""
    import tensorflow as tf
    import tf_keras
    from maskconver_tf.modeling import factory
    from maskconver_tf.ops.preprocess import preprocess_image
    from maskconver_tf.tasks.maskconver import descriptor_for

    tf_keras.utils.set_random_seed(SEED)
    model_config = params.task.model
    model = factory.build_maskconver_model(
        tf_keras.layers.InputSpec(shape=[None, INPUT_SIZE, INPUT_SIZE, 3]),
        model_config, descriptor=descriptor_for(params.task))
    x = tf.stack([preprocess_image(im, [INPUT_SIZE, INPUT_SIZE])[0]
                  for im in images])
    norms = [l for l in model.submodules
             if isinstance(l, tf_keras.layers.BatchNormalization)]
    momenta = [l.momentum for l in norms]
    for l in norms:
        l.momentum = 0.0  # one training-mode call sets the moving stats
    k = model_config.num_instances
    model(x, center_indices=tf.zeros([len(images), k, 2], tf.int32),
          classes=tf.zeros([len(images), k], tf.int32), training=True)
    for l, m in zip(norms, momenta):
        l.momentum = m
    for v in model.variables:
        if v.name.endswith('classifier/kernel:0') and (
                'mask_feature_head' in v.name or 'center_head' in v.name):
            v.assign(v * KERNEL_SCALE)
    return model


def build_artifacts(root):
    """Returns a dict of paths: model_dir, checkpoint, export_dir,
    saved_model_dir, tflite, data_json, data_root; plus images."""
    if root in _CACHE:
        return _CACHE[root]
    import tensorflow as tf
    from official.core import train_utils
    from maskconver_tf.serving import export_module, tflite_conversion

    os.makedirs(root, exist_ok=True)
    data_root = os.path.join(root, 'shapes')
    data_json, images = shapes_images(data_root)
    params = make_params()
    model = make_model(params, images)
    model_dir = os.path.join(root, 'model_dir')
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                                         model_dir, max_to_keep=1)
    checkpoint = manager.save(checkpoint_number=7)
    train_utils.serialize_config(params, model_dir)

    export_dir = os.path.join(root, 'export')
    export_module.export_saved_model(
        params, export_dir, checkpoint_path=checkpoint, batch_size=1,
        input_type='image_tensor', experiment=EXPERIMENT)
    tfl_export = os.path.join(root, 'export_tflite')
    export_module.export_saved_model(
        params, tfl_export, checkpoint_path=checkpoint, batch_size=1,
        input_type='tflite', experiment=EXPERIMENT)
    with open(os.path.join(tfl_export, export_module.SIDECAR_NAME)) as f:
        base = json.load(f)
    tflite = os.path.join(root, 'model_float.tflite')
    tflite_conversion.export_tflite(os.path.join(tfl_export, 'saved_model'),
                                    tflite, quant_type='none',
                                    base_metadata=base)
    _CACHE[root] = dict(
        model_dir=model_dir, checkpoint=checkpoint, export_dir=export_dir,
        saved_model_dir=os.path.join(export_dir, 'saved_model'),
        tflite=tflite, data_json=data_json, data_root=data_root,
        images=images, params=params)
    return _CACHE[root]


def artifacts(tmp_path_factory):
    """Session-wide artifacts, whichever test module asks first."""
    if 'session' not in _CACHE:
        _CACHE['session'] = build_artifacts(
            str(tmp_path_factory.mktemp('maskconver_artifacts')))
    return _CACHE['session']
