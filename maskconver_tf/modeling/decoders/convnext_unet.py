"""ConvNeXt-UNet pixel decoder (the paper's top-down path), on any backbone."""

from typing import List, Mapping, Optional

import tensorflow as tf
import tf_keras
from official.modeling import hyperparams
from official.modeling import tf_utils
from official.vision.modeling.decoders import factory
from official.vision.ops import spatial_transform_ops

from maskconver_tf.modeling.layers import convnext_block


@tf_keras.utils.register_keras_serializable(package='maskconver')
class ConvNeXtUNet(tf_keras.layers.Layer):
    """Top-down ConvNeXt path over the coarsest `len(repeats)` backbone levels.

    For level i (i = 0 is the backbone's coarsest level, then one finer per
    step): lateral = LayerNorm(1x1 conv(backbone[level])); the running
    feature x is, for i = 0, the lateral, else
    nearest_2x(LayerNorm(1x1 conv(x))) + lateral; then `repeats[i]`
    ConvNeXt blocks of width `filters[i]` and kernel `kernel_sizes[i]`, then
    the activation. The result replaces backbone[level]; finer levels pass
    through unchanged.

    With a ResNet-50 backbone and repeats [18, 1, 1], filters 384, kernel 7
    and squeeze-excitation this is exactly Model Garden's `resnet_unet`
    top-down path (same weights, same endpoint widths and strides).

    Input: dict level (str) -> float [B, H / 2^l, W / 2^l, C_l].
    Output: the same dict with the processed levels replaced by
    float [B, H / 2^l, W / 2^l, filters[i]].
    L2 on the 1x1 conv kernels and the blocks' Dense / SE kernels.
    """

    def __init__(self,
                 repeats: List[int],
                 filters: List[int],
                 kernel_sizes: List[int],
                 se_ratio: Optional[float] = 0.0625,
                 layer_scale_init_value: float = 1e-6,
                 stochastic_depth_drop_rate: float = 0.0,
                 activation: str = 'gelu',
                 kernel_initializer: str = 'VarianceScaling',
                 kernel_regularizer=None,
                 **kwargs):
        super().__init__(**kwargs)
        if not len(repeats) == len(filters) == len(kernel_sizes):
            raise ValueError(
                'ConvNeXtUNet: repeats, filters and kernel_sizes need one entry '
                f'per level; received {repeats}, {filters}, {kernel_sizes}')
        self._repeats = list(repeats)
        self._filters = list(filters)
        self._kernel_sizes = list(kernel_sizes)
        self._se_ratio = se_ratio
        self._layer_scale_init_value = layer_scale_init_value
        self._stochastic_depth_drop_rate = stochastic_depth_drop_rate
        self._activation = activation
        self._kernel_initializer = kernel_initializer
        self._kernel_regularizer = tf_keras.regularizers.get(
            kernel_regularizer)

    def _conv1x1(self, filters, name):
        return tf_keras.layers.Conv2D(
            filters, 1, use_bias=False,
            kernel_initializer=self._kernel_initializer,
            kernel_regularizer=self._kernel_regularizer, name=name)

    def build(self, input_shape):
        levels = sorted(int(k) for k in input_shape if str(k).isdigit())
        if len(levels) < len(self._repeats):
            raise ValueError(f'ConvNeXtUNet: {len(self._repeats)} levels '
                             f'requested, backbone gives levels {levels}')
        self._levels = [levels[-1] - i for i in range(len(self._repeats))]
        missing = [l for l in self._levels if l not in levels]
        if missing:
            raise ValueError(f'ConvNeXtUNet: backbone levels {levels} lack '
                             f'{missing}')
        self._lateral_convs, self._lateral_norms = [], []
        self._top_down_convs, self._top_down_norms = [], []
        self._blocks = []
        for i, level in enumerate(self._levels):
            self._lateral_convs.append(
                self._conv1x1(self._filters[i], f'lateral_l{level}'))
            self._lateral_norms.append(tf_keras.layers.LayerNormalization(
                epsilon=1e-6, name=f'lateral_norm_l{level}'))
            if i > 0:
                self._top_down_convs.append(
                    self._conv1x1(self._filters[i], f'top_down_l{level}'))
                self._top_down_norms.append(tf_keras.layers.LayerNormalization(
                    epsilon=1e-6, name=f'top_down_norm_l{level}'))
            # As Model Garden's ResNet-UNet: the levels continue the
            # numbering of a ResNet's block groups 2-5, so the drop rate of
            # level i is rate * (6 + i) / 8.
            drop_rate = self._stochastic_depth_drop_rate * (6 + i) / 8
            self._blocks.append([
                convnext_block.ConvNeXtBlock(
                    self._filters[i], kernel_size=self._kernel_sizes[i],
                    se_ratio=self._se_ratio,
                    layer_scale_init_value=self._layer_scale_init_value,
                    stochastic_depth_drop_rate=drop_rate,
                    kernel_regularizer=self._kernel_regularizer,
                    name=f'block_l{level}_{j}')
                for j in range(self._repeats[i])])
        self._activation_fn = tf_utils.get_activation(self._activation)
        super().build(input_shape)

    def call(self, inputs, training=None):
        outputs = dict(inputs)
        x = None
        for i, level in enumerate(self._levels):
            lateral = self._lateral_norms[i](
                self._lateral_convs[i](inputs[str(level)]))
            if x is None:
                x = lateral
            else:
                x = self._top_down_norms[i - 1](self._top_down_convs[i - 1](x))
                x = spatial_transform_ops.nearest_upsampling(x, 2) + lateral
            for block in self._blocks[i]:
                x = block(x, training=training)
            x = self._activation_fn(x)
            outputs[str(level)] = x
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update({
            'repeats': self._repeats,
            'filters': self._filters,
            'kernel_sizes': self._kernel_sizes,
            'se_ratio': self._se_ratio,
            'layer_scale_init_value': self._layer_scale_init_value,
            'stochastic_depth_drop_rate': self._stochastic_depth_drop_rate,
            'activation': self._activation,
            'kernel_initializer': self._kernel_initializer,
            'kernel_regularizer': tf_keras.regularizers.serialize(
                self._kernel_regularizer),
        })
        return config


@factory.register_decoder_builder('convnext_unet')
def build_convnext_unet_decoder(
        input_specs: Mapping[str, tf.TensorShape],
        model_config: hyperparams.Config,
        l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
) -> ConvNeXtUNet:
    """Builds a ConvNeXtUNet from `model_config.decoder.convnext_unet`."""
    del input_specs  # Levels are read from the features at build time.
    if model_config.decoder.type != 'convnext_unet':
        raise ValueError(f'decoder type {model_config.decoder.type!r} given to '
                         'the convnext_unet builder')
    cfg = model_config.decoder.get()
    return ConvNeXtUNet(
        repeats=cfg.repeats,
        filters=cfg.filters,
        kernel_sizes=cfg.kernel_sizes,
        se_ratio=cfg.se_ratio,
        layer_scale_init_value=cfg.layer_scale_init_value,
        stochastic_depth_drop_rate=cfg.stochastic_depth_drop_rate,
        activation=model_config.norm_activation.activation,
        kernel_regularizer=l2_regularizer)
