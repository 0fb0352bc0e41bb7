"""MultiScaleMaskConverHead: a tower shared over FPN levels, per-level norms."""

from typing import Mapping

import tensorflow as tf
import tf_keras
from official.modeling import tf_utils

from maskconver_tf.modeling.heads.maskconver_head import build_norm_layer


@tf_keras.utils.register_keras_serializable(package='maskconver')
class MultiScaleMaskConverHead(tf_keras.layers.Layer):
    """Dense prediction on every level min_level..max_level, flattened.

    The conv weights (tower and classifier) are shared across levels, the
    normalisation layers are per level (their statistics differ by scale).
    Tower, `num_convs` times: depthwise k x k + norm + act + 1x1 + norm + act
    (`use_depthwise_convolution`), else 3x3 conv + norm + act; no biases.
    Classifier: `prediction_kernel_size` conv with bias (init
    `bias_initializer`) to `num_outputs` channels.

    Call: features dict level (str) -> float [B, h_l, w_l, num_filters].
    Returns float [B, sum_l h_l * w_l, num_outputs]: each level flattened
    row-major ((y, x) -> y * w_l + x), levels concatenated from min_level.
    L2 on the 1x1 / 3x3 / classifier kernels only.
    """

    def __init__(self,
                 num_outputs: int,
                 min_level: int = 3,
                 max_level: int = 7,
                 num_convs: int = 4,
                 num_filters: int = 256,
                 use_depthwise_convolution: bool = True,
                 depthwise_kernel_size: int = 7,
                 prediction_kernel_size: int = 1,
                 activation: str = 'gelu',
                 use_sync_bn: bool = False,
                 norm_momentum: float = 0.99,
                 norm_epsilon: float = 0.001,
                 use_layer_norm: bool = True,
                 bias_initializer: float = 0.0,
                 kernel_regularizer=None,
                 **kwargs):
        super().__init__(**kwargs)
        self._num_outputs = num_outputs
        self._min_level = min_level
        self._max_level = max_level
        self._num_convs = num_convs
        self._num_filters = num_filters
        self._use_depthwise_convolution = use_depthwise_convolution
        self._depthwise_kernel_size = depthwise_kernel_size
        self._prediction_kernel_size = prediction_kernel_size
        self._activation = activation
        self._use_sync_bn = use_sync_bn
        self._norm_momentum = norm_momentum
        self._norm_epsilon = norm_epsilon
        self._use_layer_norm = use_layer_norm
        self._bias_initializer = bias_initializer
        self._kernel_regularizer = tf_keras.regularizers.get(
            kernel_regularizer)

        self._activation_fn = tf_utils.get_activation(activation)
        norm = lambda name: build_norm_layer(
            use_layer_norm, use_sync_bn, norm_momentum, norm_epsilon, name)
        self._depthwise_convs, self._convs = [], []
        for i in range(num_convs):
            if use_depthwise_convolution:
                self._depthwise_convs.append(tf_keras.layers.DepthwiseConv2D(
                    depthwise_kernel_size, padding='same', use_bias=False,
                    depthwise_initializer='he_normal',
                    name=f'tower_depthwise_{i}'))
            self._convs.append(tf_keras.layers.Conv2D(
                num_filters, 1 if use_depthwise_convolution else 3,
                padding='same', use_bias=False,
                kernel_initializer='he_normal',
                kernel_regularizer=self._kernel_regularizer,
                name=f'tower_conv_{i}'))
        # Per level: [depthwise norm (if any), conv norm] for every tower conv.
        self._norms = {
            str(level): [[norm(f'l{level}_tower_{kind}norm_{i}')
                          for kind in (['depthwise_'] if
                                       use_depthwise_convolution else []) + ['']]
                         for i in range(num_convs)]
            for level in range(min_level, max_level + 1)}
        self._classifier = tf_keras.layers.Conv2D(
            num_outputs, prediction_kernel_size, padding='same',
            kernel_initializer=tf_keras.initializers.TruncatedNormal(
                stddev=0.01),
            bias_initializer=tf_keras.initializers.Constant(bias_initializer),
            kernel_regularizer=self._kernel_regularizer, name='classifier')

    def call(self, features: Mapping[str, tf.Tensor], training=None):
        outputs = []
        for level in range(self._min_level, self._max_level + 1):
            x = features[str(level)]
            norms = self._norms[str(level)]
            for i in range(self._num_convs):
                if self._use_depthwise_convolution:
                    x = self._depthwise_convs[i](x)
                    x = self._activation_fn(norms[i][0](x, training=training))
                x = self._convs[i](x)
                x = self._activation_fn(norms[i][-1](x, training=training))
            x = self._classifier(x)
            _, h, w, c = x.shape
            outputs.append(tf.reshape(x, [-1, h * w, c]))
        return tf.concat(outputs, axis=1)

    def get_config(self):
        config = super().get_config()
        config.update({
            'num_outputs': self._num_outputs,
            'min_level': self._min_level,
            'max_level': self._max_level,
            'num_convs': self._num_convs,
            'num_filters': self._num_filters,
            'use_depthwise_convolution': self._use_depthwise_convolution,
            'depthwise_kernel_size': self._depthwise_kernel_size,
            'prediction_kernel_size': self._prediction_kernel_size,
            'activation': self._activation,
            'use_sync_bn': self._use_sync_bn,
            'norm_momentum': self._norm_momentum,
            'norm_epsilon': self._norm_epsilon,
            'use_layer_norm': self._use_layer_norm,
            'bias_initializer': self._bias_initializer,
            'kernel_regularizer': tf_keras.regularizers.serialize(
                self._kernel_regularizer),
        })
        return config
