"""maskconver_tf: MaskConver panoptic segmentation on TensorFlow / Model Garden.

Keras 2 (`tf_keras`) is used throughout, whatever `tf.keras` resolves to.
"""

from maskconver_tf._compat import check_tf_keras as _check_tf_keras

_check_tf_keras()

__version__ = '0.1.0'
