"""Shared checks for Keras layers and models (keras-hub's run_layer_test habit).

`run_layer_test` checks, for one layer and one set of call arguments:
- output structure, shapes and dtypes (when expected values are given);
- get_config is JSON-serialisable, from_config rebuilds the layer, and the
  rebuilt layer with the same weights gives identical outputs;
- one training step gives every trainable variable a gradient.
"""

import json

import numpy as np
import tensorflow as tf
import tf_keras


def _float_leaves(structure):
    return [t for t in tf.nest.flatten(structure)
            if isinstance(t, tf.Tensor) and t.dtype.is_floating]


def assert_same_outputs(a, b, atol=1e-6):
    tf.nest.assert_same_structure(a, b)
    for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol,
                                   rtol=0)


def assert_config_round_trip(layer, args, kwargs=None, atol=1e-6):
    """from_config(get_config()) + copied weights -> identical outputs."""
    kwargs = dict(kwargs or {})
    config = layer.get_config()
    json.dumps(config)  # Plain data only (no live objects).
    clone = layer.__class__.from_config(config)
    clone(*args, **kwargs)  # Creates the variables.
    assert len(clone.weights) == len(layer.weights), (
        f'{layer.name}: {len(clone.weights)} weights after from_config, '
        f'{len(layer.weights)} before')
    clone.set_weights(layer.get_weights())
    assert_same_outputs(layer(*args, **kwargs), clone(*args, **kwargs), atol)
    assert clone.get_config() == config
    return clone


def assert_all_variables_get_gradients(layer, args, kwargs=None):
    """One training-mode call; every trainable variable gets a gradient."""
    kwargs = dict(kwargs or {}, training=True)
    with tf.GradientTape() as tape:
        outputs = layer(*args, **kwargs)
        leaves = _float_leaves(outputs)
        assert leaves, 'no floating-point output to differentiate'
        # Random weights so no output's gradient cancels by symmetry.
        loss = tf.add_n([
            tf.reduce_sum(tf.cast(t, tf.float32) * tf.random.stateless_normal(
                tf.shape(t), seed=[i, 1]))
            for i, t in enumerate(leaves)])
        loss += tf.add_n(layer.losses) if layer.losses else 0.0
    variables = layer.trainable_variables
    assert variables, f'{layer.name} has no trainable variables'
    grads = tape.gradient(loss, variables)
    missing = [v.name for v, g in zip(variables, grads) if g is None]
    assert not missing, f'no gradient for {missing}'
    return grads


def run_layer_test(layer, args, kwargs=None, expected_shapes=None,
                   expected_dtypes=None, atol=1e-6, check_gradients=True):
    """Runs the checks of this module; returns the layer's outputs.

    Args:
      layer: the layer (or model) under test, unbuilt or built.
      args: tuple of positional call arguments.
      kwargs: extra call keyword arguments (not `training`).
      expected_shapes / expected_dtypes: optional; a shape list / dtype for
        a tensor output, or a dict of them (all keys) for a dict output.
    """
    kwargs = dict(kwargs or {})
    outputs = layer(*args, training=False, **kwargs)
    as_dict = lambda x: x if isinstance(x, dict) else {'output': x}
    if expected_shapes is not None:
        got = {k: v.shape.as_list() for k, v in as_dict(outputs).items()}
        want = {k: list(v) for k, v in as_dict(expected_shapes).items()}
        assert got == want, f'shapes {got}, expected {want}'
    if expected_dtypes is not None:
        got = {k: v.dtype for k, v in as_dict(outputs).items()}
        want = {k: tf.as_dtype(v) for k, v in as_dict(expected_dtypes).items()}
        assert got == want, f'dtypes {got}, expected {want}'
    assert_config_round_trip(layer, args, dict(kwargs, training=False), atol)
    if check_gradients:
        assert_all_variables_get_gradients(layer, args, kwargs)
    return outputs


def count(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def reset_policy():
    tf_keras.mixed_precision.set_global_policy('float32')
