"""Checks that the Keras 2 implementation (`tf_keras`) matches TensorFlow.

TensorFlow 2.20 puts Keras 3 behind `tf.keras`; Model Garden and this package
use Keras 2 through the separate `tf_keras` package, so a missing or
mismatched `tf_keras` must fail once, clearly, at import time.
"""

import importlib


def _minor(version):
    return '.'.join(version.split('.')[:2])


def check_tf_keras():
    """Returns the `tf_keras` module or raises ImportError naming the fix."""
    import tensorflow as tf

    try:
        tf_keras = importlib.import_module('tf_keras')
    except ImportError as e:
        raise ImportError(
            'maskconver_tf needs Keras 2 as the `tf_keras` package '
            f'(tf-keras=={_minor(tf.__version__)}.*, matching tensorflow '
            f'{tf.__version__}); it could not be imported ({e}). '
            f'Install it with: pip install "tf-keras=={_minor(tf.__version__)}.*"'
        ) from e
    if _minor(tf_keras.__version__) != _minor(tf.__version__):
        raise ImportError(
            f'maskconver_tf: tf_keras {tf_keras.__version__} does not match '
            f'tensorflow {tf.__version__}; install '
            f'"tf-keras=={_minor(tf.__version__)}.*".')
    return tf_keras
