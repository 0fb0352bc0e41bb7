"""MaskConver's FPN decoder: lateral convs, top-down fusion, post-hoc convs,
stride-2 extra levels and one norm per output level."""

import math
from typing import Mapping, Optional

import tensorflow as tf
import tf_keras
from official.modeling import hyperparams
from official.modeling import tf_utils
from official.vision.modeling.decoders import factory
from official.vision.ops import spatial_transform_ops

_FUSION_TYPES = ('sum', 'concat')


def _levels(shapes) -> list:
    return sorted(int(k) for k in shapes if str(k).isdigit())


@tf_keras.utils.register_keras_serializable(package='maskconver')
class MaskConverFPN(tf_keras.layers.Layer):
    """FPN over levels min_level..max_level of a backbone's features.

    With top = min(coarsest input level, max_level), all convs `num_filters`
    wide, 'same' padding, with bias, SeparableConv2D if `use_separable_conv`
    else Conv2D:
    1. lateral[l] = 1x1 conv(inputs[l]) for l = min_level..top;
    2. x[top] = lateral[top]; x[l] = fuse(nearest_2x(x[l + 1]), lateral[l])
       going down, fuse = add ('sum') or channel concat ('concat': x[l] is
       num_filters * (top - l + 1) wide);
    3. y[l] = post-hoc conv(x[l]), kernel `depthwise_kernel_size` if
       separable else 3;
    4. y[l] = 3x3 stride-2 conv(y[l - 1]) for l = top + 1..max_level, the
       input passed through the activation for all but level top + 1;
    5. out[l] = norm(y[l]): LayerNorm (epsilon 1e-6) if `use_layer_norm`,
       else (Sync)BatchNorm; no activation after it.

    Input: dict level (str) -> float [B, H / 2^l, W / 2^l, C_l], levels
      min_level..top present (others are ignored).
    Output: dict str(l) -> float [B, H / 2^l, W / 2^l, num_filters] for
      l = min_level..max_level (extra levels: ceil of the halved size).
    `kernel_regularizer` on every conv kernel (depthwise and pointwise),
    `bias_regularizer` on their biases.
    """

    def __init__(self,
                 input_specs: Optional[Mapping[str, tf.TensorShape]] = None,
                 min_level: int = 3,
                 max_level: int = 7,
                 num_filters: int = 256,
                 fusion_type: str = 'sum',
                 use_separable_conv: bool = False,
                 depthwise_kernel_size: int = 3,
                 use_keras_layer: bool = False,
                 activation: str = 'relu',
                 use_sync_bn: bool = False,
                 norm_momentum: float = 0.99,
                 norm_epsilon: float = 0.001,
                 use_layer_norm: bool = False,
                 kernel_initializer: str = 'VarianceScaling',
                 kernel_regularizer=None,
                 bias_regularizer=None,
                 **kwargs):
        super().__init__(**kwargs)
        if fusion_type not in _FUSION_TYPES:
            raise ValueError(f'MaskConverFPN: fusion_type {fusion_type!r} is '
                             f'not one of {_FUSION_TYPES}')
        self._input_specs = (None if input_specs is None else {
            str(k): tf.TensorShape(v) for k, v in input_specs.items()})
        self._min_level = min_level
        self._max_level = max_level
        self._num_filters = num_filters
        self._fusion_type = fusion_type
        self._use_separable_conv = use_separable_conv
        self._depthwise_kernel_size = depthwise_kernel_size
        self._use_keras_layer = use_keras_layer
        self._activation = activation
        self._use_sync_bn = use_sync_bn
        self._norm_momentum = norm_momentum
        self._norm_epsilon = norm_epsilon
        self._use_layer_norm = use_layer_norm
        self._kernel_initializer = kernel_initializer
        self._kernel_regularizer = tf_keras.regularizers.get(
            kernel_regularizer)
        self._bias_regularizer = tf_keras.regularizers.get(bias_regularizer)
        self._output_specs = None
        if self._input_specs is not None:
            self._output_specs = self._compute_output_specs(self._input_specs)

    @property
    def output_specs(self) -> Optional[Mapping[str, tf.TensorShape]]:
        """{level: [None, h, w, num_filters]}; None until the input is known."""
        return self._output_specs

    def _top_level(self, shapes) -> int:
        """Validates the input levels; returns the coarsest one used."""
        levels = _levels(shapes)
        if not levels or levels[0] > self._min_level:
            raise ValueError(
                f'MaskConverFPN: min_level {self._min_level} is finer than '
                f'the finest input level; input levels {levels}')
        top = min(levels[-1], self._max_level)
        missing = [l for l in range(self._min_level, max(top, self._min_level)
                                    + 1) if l not in levels]
        if missing:
            raise ValueError(f'MaskConverFPN: input levels {levels} lack '
                             f'levels {missing} (min_level {self._min_level})')
        return top

    def _compute_output_specs(self, shapes):
        top = self._top_level(shapes)
        specs = {}
        h, w = None, None
        for level in range(self._min_level, self._max_level + 1):
            if level <= top:
                h, w = tf.TensorShape(shapes[str(level)])[1:3]
            else:  # Stride 2, 'same' padding.
                h = None if h is None else math.ceil(h / 2)
                w = None if w is None else math.ceil(w / 2)
            specs[str(level)] = tf.TensorShape(
                [None, h, w, self._num_filters])
        return specs

    def _conv(self, kernel_size, strides, name):
        if self._use_separable_conv:
            return tf_keras.layers.SeparableConv2D(
                self._num_filters, kernel_size, strides=strides,
                padding='same',
                depthwise_initializer=tf_utils.clone_initializer(
                    self._kernel_initializer),
                pointwise_initializer=tf_utils.clone_initializer(
                    self._kernel_initializer),
                depthwise_regularizer=self._kernel_regularizer,
                pointwise_regularizer=self._kernel_regularizer,
                bias_regularizer=self._bias_regularizer, name=name)
        return tf_keras.layers.Conv2D(
            self._num_filters, kernel_size, strides=strides, padding='same',
            kernel_initializer=tf_utils.clone_initializer(
                self._kernel_initializer),
            kernel_regularizer=self._kernel_regularizer,
            bias_regularizer=self._bias_regularizer, name=name)

    def _norm(self, name):
        if self._use_layer_norm:
            return tf_keras.layers.LayerNormalization(epsilon=1e-6, name=name)
        bn = (tf_keras.layers.experimental.SyncBatchNormalization
              if self._use_sync_bn else tf_keras.layers.BatchNormalization)
        return bn(momentum=self._norm_momentum, epsilon=self._norm_epsilon,
                  name=name)

    def build(self, input_shape):
        self._top = self._top_level(input_shape)
        self._output_specs = self._compute_output_specs(input_shape)
        own = range(self._min_level, self._top + 1)
        post_hoc_kernel = (self._depthwise_kernel_size
                           if self._use_separable_conv else 3)
        self._lateral_convs = {
            str(l): self._conv(1, 1, f'lateral_l{l}') for l in own}
        self._post_hoc_convs = {
            str(l): self._conv(post_hoc_kernel, 1, f'post_hoc_l{l}')
            for l in own}
        self._extra_convs = {
            str(l): self._conv(3, 2, f'extra_l{l}')
            for l in range(self._top + 1, self._max_level + 1)}
        self._norms = {
            str(l): self._norm(f'norm_l{l}')
            for l in range(self._min_level, self._max_level + 1)}
        self._activation_fn = tf_utils.get_activation(self._activation)
        if self._use_keras_layer:
            self._upsample = tf_keras.layers.UpSampling2D(
                2, interpolation='nearest')
            self._fuse = (tf_keras.layers.Add() if self._fusion_type == 'sum'
                          else tf_keras.layers.Concatenate(axis=-1))
        super().build(input_shape)

    def _upsample_and_fuse(self, x, lateral):
        if self._use_keras_layer:
            return self._fuse([self._upsample(x), lateral])
        x = spatial_transform_ops.nearest_upsampling(x, 2)
        if self._fusion_type == 'sum':
            return x + lateral
        return tf.concat([x, lateral], axis=-1)

    def call(self, inputs, training=None):
        x = self._lateral_convs[str(self._top)](inputs[str(self._top)])
        feats = {str(self._top): self._post_hoc_convs[str(self._top)](x)}
        for level in range(self._top - 1, self._min_level - 1, -1):
            # The running top-down feature is fused, not yet smoothed.
            lateral = self._lateral_convs[str(level)](inputs[str(level)])
            x = self._upsample_and_fuse(x, lateral)
            feats[str(level)] = self._post_hoc_convs[str(level)](x)
        for level in range(self._top + 1, self._max_level + 1):
            below = feats[str(level - 1)]
            if level > self._top + 1:
                below = self._activation_fn(below)
            feats[str(level)] = self._extra_convs[str(level)](below)
        return {
            str(l): self._norms[str(l)](feats[str(l)], training=training)
            for l in range(self._min_level, self._max_level + 1)}

    def get_config(self):
        config = super().get_config()
        config.update({
            'input_specs': (None if self._input_specs is None else {
                k: v.as_list() for k, v in self._input_specs.items()}),
            'min_level': self._min_level,
            'max_level': self._max_level,
            'num_filters': self._num_filters,
            'fusion_type': self._fusion_type,
            'use_separable_conv': self._use_separable_conv,
            'depthwise_kernel_size': self._depthwise_kernel_size,
            'use_keras_layer': self._use_keras_layer,
            'activation': self._activation,
            'use_sync_bn': self._use_sync_bn,
            'norm_momentum': self._norm_momentum,
            'norm_epsilon': self._norm_epsilon,
            'use_layer_norm': self._use_layer_norm,
            'kernel_initializer': self._kernel_initializer,
            'kernel_regularizer': tf_keras.regularizers.serialize(
                self._kernel_regularizer),
            'bias_regularizer': tf_keras.regularizers.serialize(
                self._bias_regularizer),
        })
        return config


@factory.register_decoder_builder('maskconver_fpn')
def build_maskconver_fpn_decoder(
        input_specs: Mapping[str, tf.TensorShape],
        model_config: hyperparams.Config,
        l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> MaskConverFPN:
    """Builds a MaskConverFPN from `model_config.decoder.maskconver_fpn`,
    the model's min / max level and norm_activation."""
    if model_config.decoder.type != 'maskconver_fpn':
        raise ValueError(f'decoder type {model_config.decoder.type!r} given to '
                         'the maskconver_fpn builder')
    cfg = model_config.decoder.maskconver_fpn
    norm_activation = model_config.norm_activation
    return MaskConverFPN(
        input_specs=input_specs,
        min_level=model_config.min_level,
        max_level=model_config.max_level,
        num_filters=cfg.num_filters,
        fusion_type=cfg.fusion_type,
        use_separable_conv=cfg.use_separable_conv,
        depthwise_kernel_size=cfg.depthwise_kernel_size,
        use_keras_layer=cfg.use_keras_layer,
        activation=norm_activation.activation,
        use_sync_bn=norm_activation.use_sync_bn,
        norm_momentum=norm_activation.norm_momentum,
        norm_epsilon=norm_activation.norm_epsilon,
        use_layer_norm=cfg.use_layer_norm,
        kernel_regularizer=l2_regularizer)
