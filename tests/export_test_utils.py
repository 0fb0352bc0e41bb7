"""One shared numerics check of Keras vs SavedModel vs TFLite (keras-hub habit).

`compare_outputs` compares two output dicts of the serving contract:
float outputs (logits, scores) to an absolute tolerance, int maps by the
share of equal pixels, and names / dtypes / shapes exactly.
`shapes_params` / `shapes_model` give the small shapes model the export
and graph-rewrite tests share. `run_all` runs the Keras export module, the
SavedModel signature and a .tflite on the same preprocessed images and
compares every pair.
"""

import numpy as np
import tensorflow as tf

from maskconver_tf.serving import export_module
from maskconver_tf.serving import tflite_conversion

MAP_KEYS = ('category_mask', 'instance_mask')
LOGIT_KEYS = ('class_heatmaps', 'mask_logits')


def shapes_params(size):
    """`maskconver_shapes` at size x size px, panoptic output at the input."""
    params = export_module.load_params('maskconver_shapes')
    params.task.model.input_size = [size, size, 3]
    params.task.model.panoptic_generator.output_size = []
    return params


def shapes_model(params, seed=3):
    """The export module's (seeded) model for `shapes_params`."""
    tf.keras.utils.set_random_seed(seed)
    size = params.task.model.input_size[:2]
    return export_module.MaskConverModule(
        params, batch_size=None, input_image_size=list(size)).model


def agreement(a, b):
    """Share of equal elements of two int maps of the same shape."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.mean(a == b))


def compare_outputs(expected, actual, logits_atol=1e-4, min_agreement=0.999,
                    what=''):
    """Asserts the contract outputs of `actual` match `expected`.

    Returns a dict key -> max abs difference (floats) or agreement (maps).
    """
    report = {}
    for key, want in expected.items():
        assert key in actual, f'{what}: output {key} missing'
        want, got = np.asarray(want), np.asarray(actual[key])
        assert got.dtype == want.dtype, (
            f'{what}: {key} {got.dtype} != {want.dtype}')
        assert got.shape == want.shape, (
            f'{what}: {key} {got.shape} != {want.shape}')
        if key in MAP_KEYS:
            report[key] = agreement(want, got)
            assert report[key] >= min_agreement, (
                f'{what}: {key} agrees on {report[key]:.5f} of pixels')
        elif key in LOGIT_KEYS:
            report[key] = float(np.max(np.abs(want - got)))
            assert report[key] <= logits_atol, (
                f'{what}: {key} off by {report[key]}')
    return report


def keras_outputs(module, images):
    """The export module's own forward pass (Keras) on preprocessed images."""
    out = module.serve(tf.constant(images))
    return {k: np.asarray(v) for k, v in out.items()}


def saved_model_outputs(saved_model_dir, images):
    """Runs image by image (a tflite-type SavedModel has batch 1)."""
    fn = tf.saved_model.load(saved_model_dir).signatures['serving_default']
    runs = [fn(inputs=tf.constant(im[np.newaxis])) for im in images]
    return {k: np.concatenate([np.asarray(r[k]) for r in runs])
            for k in runs[0]}


def tflite_outputs(tflite_model, images):
    """Runs each image of [N, H, W, 3] through the .tflite, stacks outputs."""
    interpreter = tflite_conversion.make_interpreter(tflite_model)
    runs = [tflite_conversion.run_tflite(interpreter, im[np.newaxis])
            for im in images]
    return {k: np.concatenate([r[k] for r in runs]) for k in runs[0]}


def run_all(module, saved_model_dir, tflite_model, images, **tolerances):
    """Keras vs SavedModel vs TFLite on the same preprocessed float images."""
    keras = keras_outputs(module, images)
    saved = saved_model_outputs(saved_model_dir, images)
    lite = tflite_outputs(tflite_model, images)
    return {'saved_model': compare_outputs(keras, saved, what='SavedModel',
                                           **tolerances),
            'tflite': compare_outputs(keras, lite, what='TFLite', **tolerances)}
