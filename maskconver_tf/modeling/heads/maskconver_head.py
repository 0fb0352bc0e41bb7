"""MaskConverHead: the dense head of class, center-embedding and mask-feature
maps."""

from typing import Mapping, Optional, Sequence, Tuple, Union

import tensorflow as tf
import tf_keras
from official.modeling import tf_utils
from official.vision.modeling.layers import nn_layers
from official.vision.ops import spatial_transform_ops

FEATURE_FUSIONS = (None, 'sum', 'concat', 'pyramid_fusion')
Features = Union[tf.Tensor, Mapping[str, tf.Tensor]]


def build_norm_layer(use_layer_norm: bool, use_sync_bn: bool,
                     norm_momentum: float, norm_epsilon: float, name: str):
    """LayerNorm (eps 1e-6) or (synchronised) BatchNorm on the channel axis."""
    if use_layer_norm:
        return tf_keras.layers.LayerNormalization(epsilon=1e-6, name=name)
    bn = (tf_keras.layers.experimental.SyncBatchNormalization if use_sync_bn
          else tf_keras.layers.BatchNormalization)
    return bn(momentum=norm_momentum, epsilon=norm_epsilon, name=name)


def _level(features: Features, level: int) -> tf.Tensor:
    return features[str(level)] if isinstance(features, Mapping) else features


@tf_keras.utils.register_keras_serializable(package='maskconver')
class MaskConverHead(tf_keras.layers.Layer):
    """Fuses a decoder level with a finer backbone level, runs a conv tower,
    predicts `num_outputs` channels per pixel.

    Responsibilities: feature fusion and the per-pixel tower live here; the
    multi-scale context (ASPP / FPN) lives in the decoder, and what the
    channels mean (class logits, embeddings) is up to the model.

    Fusion (`feature_fusion`):
      None: x = decoder[level].
      'sum' / 'concat': y = act(norm(1x1 conv(backbone[low_level]))) with
        `low_level_num_filters` channels; x = bilinear resize of
        decoder[level] to y's size, then x + y ('sum', widths must match) or
        [x, y] on channels ('concat').
      'pyramid_fusion': every decoder level bilinearly resized to `level`
        and summed (Model Garden's `pyramid_feature_fusion`; the levels need
        one width; low_level unused).
    Tower, `num_convs` times: depthwise k x k + norm + act + 1x1 + norm + act
    (`use_depthwise_convolution`), else 3x3 conv + norm + act; no biases.
    Then optional nearest upsampling by `upsample_factor` and a
    `prediction_kernel_size` conv with bias (init `bias_initializer`, e.g.
    -2.19 for class logits = prior 0.1) to `num_outputs` channels, no
    activation.

    Call: inputs = (backbone_features, decoder_features), each a dict
    level (str) -> float [B, h_l, w_l, C_l] (or a single tensor).
    Returns float [B, h, w, num_outputs] in the layer's compute dtype, (y, x)
    spatial order, h = H / 2^min(level, low_level) * upsample_factor.
    L2 on the 1x1 / 3x3 / prediction kernels; not on depthwise kernels,
    biases or norms.
    """

    def __init__(self,
                 num_outputs: int,
                 level: int = 4,
                 low_level: int = 3,
                 low_level_num_filters: int = 256,
                 feature_fusion: Optional[str] = 'sum',
                 num_convs: int = 2,
                 num_filters: int = 256,
                 use_depthwise_convolution: bool = True,
                 depthwise_kernel_size: int = 7,
                 prediction_kernel_size: int = 1,
                 upsample_factor: int = 1,
                 activation: str = 'relu',
                 use_sync_bn: bool = False,
                 norm_momentum: float = 0.99,
                 norm_epsilon: float = 0.001,
                 use_layer_norm: bool = False,
                 bias_initializer: float = 0.0,
                 kernel_regularizer=None,
                 **kwargs):
        super().__init__(**kwargs)
        if feature_fusion not in FEATURE_FUSIONS:
            raise ValueError(f'MaskConverHead: feature_fusion must be one of '
                             f'{FEATURE_FUSIONS}, received {feature_fusion!r}')
        self._num_outputs = num_outputs
        self._level = level
        self._low_level = low_level
        self._low_level_num_filters = low_level_num_filters
        self._feature_fusion = feature_fusion
        self._num_convs = num_convs
        self._num_filters = num_filters
        self._use_depthwise_convolution = use_depthwise_convolution
        self._depthwise_kernel_size = depthwise_kernel_size
        self._prediction_kernel_size = prediction_kernel_size
        self._upsample_factor = upsample_factor
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
        conv = lambda filters, kernel, name: tf_keras.layers.Conv2D(
            filters, kernel, padding='same', use_bias=False,
            kernel_initializer='he_normal',
            kernel_regularizer=self._kernel_regularizer, name=name)

        if feature_fusion in ('sum', 'concat'):
            self._low_level_conv = conv(low_level_num_filters, 1,
                                        'low_level_conv')
            self._low_level_norm = norm('low_level_norm')
        self._depthwise_convs, self._convs = [], []
        for i in range(num_convs):
            if use_depthwise_convolution:
                self._depthwise_convs.append(tf_keras.layers.DepthwiseConv2D(
                    depthwise_kernel_size, padding='same', use_bias=False,
                    depthwise_initializer='he_normal',
                    name=f'tower_depthwise_{i}'))
            self._convs.append(conv(
                num_filters, 1 if use_depthwise_convolution else 3,
                f'tower_conv_{i}'))
        self._depthwise_norms, self._norms = self._build_tower_norms(norm)
        self._classifier = tf_keras.layers.Conv2D(
            num_outputs, prediction_kernel_size, padding='same',
            kernel_initializer=tf_keras.initializers.TruncatedNormal(
                stddev=0.01),
            bias_initializer=tf_keras.initializers.Constant(bias_initializer),
            kernel_regularizer=self._kernel_regularizer, name='classifier')

    def _build_tower_norms(self, norm):
        """(depthwise norms, conv norms) of the tower, one per conv."""
        depthwise = [norm(f'tower_depthwise_norm_{i}')
                     for i in range(len(self._depthwise_convs))]
        return depthwise, [norm(f'tower_norm_{i}')
                           for i in range(self._num_convs)]

    def _tower_norms(self, level=None):
        """The norms that follow the tower convs on `level`'s features."""
        del level  # One set for the head's single input.
        return self._depthwise_norms, self._norms

    def fuse(self, inputs: Tuple[Features, Features], training=None):
        """The fused input of the tower, float [B, h, w, C]."""
        backbone_features, decoder_features = inputs
        if self._feature_fusion == 'pyramid_fusion':
            if not isinstance(decoder_features, Mapping):
                raise ValueError(f'{self.name}: pyramid_fusion needs a dict '
                                 'of decoder levels')
            return nn_layers.pyramid_feature_fusion(decoder_features,
                                                    self._level)
        x = _level(decoder_features, self._level)
        if self._feature_fusion is None:
            return x
        y = _level(backbone_features, self._low_level)
        y = self._low_level_conv(y)
        y = self._activation_fn(self._low_level_norm(y, training=training))
        x = tf.cast(tf.image.resize(x, tf.shape(y)[1:3], method='bilinear'),
                    y.dtype)
        if self._feature_fusion == 'sum':
            return x + y
        return tf.concat([x, y], axis=-1)

    def depthwise_norm_pairs(self):
        """(DepthwiseConv2D, its norm) pairs; the norm takes the conv's
        output directly (the export folds BatchNorm into split kernels)."""
        return list(zip(self._depthwise_convs, self._depthwise_norms))

    @property
    def has_pointwise_tail(self) -> bool:
        """Whether `call` = `pointwise_tail(spatial_features(...))` with the
        tail acting on every pixel alone (1x1 classifier, no upsampling)."""
        return (self._prediction_kernel_size == 1
                and self._upsample_factor == 1)

    def _tail_start(self) -> int:
        # The last tower conv is 1x1 (pointwise) only in depthwise mode.
        return (self._num_convs - 1 if self._use_depthwise_convolution
                and self._num_convs else self._num_convs)

    def spatial_features(self, inputs: Sequence[Features], training=None,
                         before_last_depthwise: bool = False):
        """Fusion and tower up to the last op that mixes pixels: float
        [B, h, w, C] (the depthwise output after its norm and activation).

        With `before_last_depthwise` it stops at that depthwise conv's input
        (needs `ends_in_depthwise`): `last_depthwise()` then finishes it.
        """
        return self._spatial_tower(self.fuse(inputs, training=training),
                                   training,
                                   before_last_depthwise=before_last_depthwise)

    @property
    def ends_in_depthwise(self) -> bool:
        """Whether the last op of `spatial_features` that mixes pixels is
        a depthwise conv (then norm, activation)."""
        return self._use_depthwise_convolution and self._num_convs > 0

    def last_depthwise(self, level=None):
        """(DepthwiseConv2D, its norm, activation fn) ending
        `spatial_features` (`ends_in_depthwise`)."""
        self._require_depthwise_end()
        depthwise_norms, _ = self._tower_norms(level)
        return (self._depthwise_convs[-1], depthwise_norms[-1],
                self._activation_fn)

    def _require_depthwise_end(self):
        if not self.ends_in_depthwise:
            raise ValueError(f'{self.name}: the tower has no depthwise conv')

    def _spatial_tower(self, x, training, level=None,
                       before_last_depthwise=False):
        """`spatial_features` after the fusion, with `level`'s norms."""
        if before_last_depthwise:
            self._require_depthwise_end()
        depthwise_norms, _ = self._tower_norms(level)
        for i in range(self._num_convs):
            if before_last_depthwise and i == self._num_convs - 1:
                return x
            if self._use_depthwise_convolution:
                x = self._depthwise_convs[i](x)
                x = self._activation_fn(
                    depthwise_norms[i](x, training=training))
            if i < self._tail_start():
                x = self._tower_conv(i, x, training, level)
        return x

    def pointwise_tail(self, x, training=None, include_classifier=True,
                       level=None):
        """The rest of the head on `spatial_features` output.

        x: float [B, h, w, C], or [B, K, C] features gathered at K pixels
        (then returns [B, K, num_outputs]: the head's output at those pixels,
        which needs `has_pointwise_tail`). Without the classifier it returns
        the classifier's input (num_filters channels). `level` picks the
        norms of a head with per-level norms (the multi-scale head).
        """
        gathered = x.shape.rank == 3
        if gathered:
            if not self.has_pointwise_tail:
                raise ValueError(f'{self.name}: pointwise_tail on gathered '
                                 'features needs prediction_kernel_size 1 '
                                 'and upsample_factor 1')
            # expand_dims / squeeze convert to free RESHAPEs; slicing to
            # an int8 STRIDED_SLICE that LiteRT runs in 0.06 ms.
            x = tf.expand_dims(x, 2)
        for i in range(self._tail_start(), self._num_convs):
            x = self._tower_conv(i, x, training, level)
        if self._upsample_factor > 1:
            x = spatial_transform_ops.nearest_upsampling(
                x, self._upsample_factor)
        if include_classifier:
            x = self._classifier(x)
        return tf.squeeze(x, 2) if gathered else x

    @property
    def classifier(self) -> tf_keras.layers.Conv2D:
        return self._classifier

    def _tower_conv(self, i, x, training, level=None):
        x = self._convs[i](x)
        norm = self._tower_norms(level)[1][i]
        return self._activation_fn(norm(x, training=training))

    def call(self, inputs: Sequence[Features], training=None):
        return self.pointwise_tail(
            self.spatial_features(inputs, training=training),
            training=training)

    def get_config(self):
        config = super().get_config()
        config.update({
            'num_outputs': self._num_outputs,
            'level': self._level,
            'low_level': self._low_level,
            'low_level_num_filters': self._low_level_num_filters,
            'feature_fusion': self._feature_fusion,
            'num_convs': self._num_convs,
            'num_filters': self._num_filters,
            'use_depthwise_convolution': self._use_depthwise_convolution,
            'depthwise_kernel_size': self._depthwise_kernel_size,
            'prediction_kernel_size': self._prediction_kernel_size,
            'upsample_factor': self._upsample_factor,
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
