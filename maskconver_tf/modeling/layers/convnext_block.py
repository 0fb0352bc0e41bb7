"""ConvNeXt block (Liu et al. 2022) with optional squeeze-excitation."""

from typing import Optional

import tensorflow as tf
import tf_keras
from official.vision.modeling.layers import nn_layers


def _trunc_normal():
    return tf_keras.initializers.TruncatedNormal(stddev=0.02)


@tf_keras.utils.register_keras_serializable(package='maskconver')
class ConvNeXtBlock(tf_keras.layers.Layer):
    """Residual ConvNeXt block: x + drop_path(gamma * MLP(LN(DW(x)))).

    depthwise k x k conv (bias) -> LayerNorm -> Dense 4*filters -> GELU ->
    [squeeze-excitation on the 4*filters features] -> Dense filters ->
    layer scale gamma -> stochastic depth -> residual add. Input and output:
    float [B, H, W, filters]. The block owns no activation after the add
    (the decoder applies one per level).

    L2 (`kernel_regularizer`) goes on the Dense and squeeze-excitation
    kernels, not on the depthwise kernel, biases, norm or gamma.
    """

    def __init__(self,
                 filters: int,
                 kernel_size: int = 7,
                 se_ratio: Optional[float] = 0.0625,
                 layer_scale_init_value: float = 1e-6,
                 stochastic_depth_drop_rate: float = 0.0,
                 kernel_regularizer=None,
                 **kwargs):
        super().__init__(**kwargs)
        self._filters = filters
        self._kernel_size = kernel_size
        self._se_ratio = se_ratio
        self._layer_scale_init_value = layer_scale_init_value
        self._stochastic_depth_drop_rate = stochastic_depth_drop_rate
        # Accepts a Regularizer or its serialized dict (from get_config).
        self._kernel_regularizer = tf_keras.regularizers.get(
            kernel_regularizer)

        self._depthwise = tf_keras.layers.DepthwiseConv2D(
            kernel_size, padding='same', depthwise_initializer=_trunc_normal(),
            name='depthwise')
        self._norm = tf_keras.layers.LayerNormalization(epsilon=1e-6,
                                                        name='norm')
        self._expand = tf_keras.layers.Dense(
            4 * filters, kernel_initializer=_trunc_normal(),
            kernel_regularizer=self._kernel_regularizer, name='expand')
        self._project = tf_keras.layers.Dense(
            filters, kernel_initializer=_trunc_normal(),
            kernel_regularizer=self._kernel_regularizer, name='project')
        self._squeeze_excitation = None
        if se_ratio and 0 < se_ratio <= 1:
            self._squeeze_excitation = nn_layers.SqueezeExcitation(
                in_filters=4 * filters, out_filters=4 * filters,
                se_ratio=se_ratio, activation='gelu',
                kernel_regularizer=self._kernel_regularizer, name='se')
        self._drop_path = None
        if stochastic_depth_drop_rate > 0:
            self._drop_path = nn_layers.StochasticDepth(
                stochastic_depth_drop_rate)

    def build(self, input_shape):
        self._gamma = None
        if self._layer_scale_init_value > 0:
            self._gamma = self.add_weight(
                name='layer_scale', shape=[self._filters],
                initializer=tf_keras.initializers.Constant(
                    self._layer_scale_init_value))
        super().build(input_shape)

    def call(self, inputs, training=None):
        x = self._depthwise(inputs)
        x = self._norm(x)
        x = self._expand(x)
        x = tf.nn.gelu(x)
        if self._squeeze_excitation is not None:
            x = self._squeeze_excitation(x)
        x = self._project(x)
        if self._gamma is not None:
            x = tf.cast(self._gamma, x.dtype) * x
        if self._drop_path is not None:
            x = self._drop_path(x, training=training)
        return inputs + x

    def get_config(self):
        config = super().get_config()
        config.update({
            'filters': self._filters,
            'kernel_size': self._kernel_size,
            'se_ratio': self._se_ratio,
            'layer_scale_init_value': self._layer_scale_init_value,
            'stochastic_depth_drop_rate': self._stochastic_depth_drop_rate,
            'kernel_regularizer': tf_keras.regularizers.serialize(
                self._kernel_regularizer),
        })
        return config
