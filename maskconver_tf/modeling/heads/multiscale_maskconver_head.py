"""MultiScaleMaskConverHead: a tower shared over FPN levels, per-level norms."""

from typing import Mapping

import tensorflow as tf
import tf_keras

from maskconver_tf.modeling.heads.maskconver_head import MaskConverHead

# MaskConverHead arguments that a head over several levels does not take.
_SINGLE_LEVEL_ARGS = ('level', 'low_level', 'low_level_num_filters',
                      'feature_fusion', 'upsample_factor')


@tf_keras.utils.register_keras_serializable(package='maskconver')
class MultiScaleMaskConverHead(MaskConverHead):
    """Dense prediction on every level min_level..max_level, flattened.

    `MaskConverHead`'s tower and classifier (no fusion, no upsampling) with
    their conv weights shared across levels and the normalisation layers per
    level (their statistics differ by scale). Tower, `num_convs` times:
    depthwise k x k + norm + act + 1x1 + norm + act
    (`use_depthwise_convolution`), else 3x3 conv + norm + act; no biases.
    Classifier: `prediction_kernel_size` conv with bias (init
    `bias_initializer`) to `num_outputs` channels.

    Call: features dict level (str) -> float [B, h_l, w_l, C].
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
        self._min_level = min_level
        self._max_level = max_level
        super().__init__(
            num_outputs=num_outputs, level=min_level, feature_fusion=None,
            num_convs=num_convs, num_filters=num_filters,
            use_depthwise_convolution=use_depthwise_convolution,
            depthwise_kernel_size=depthwise_kernel_size,
            prediction_kernel_size=prediction_kernel_size,
            activation=activation, use_sync_bn=use_sync_bn,
            norm_momentum=norm_momentum, norm_epsilon=norm_epsilon,
            use_layer_norm=use_layer_norm, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, **kwargs)

    def _build_tower_norms(self, norm):
        # Per level: the norms of every tower conv; none shared.
        self._level_norms = {}
        for level in range(self._min_level, self._max_level + 1):
            depthwise = [norm(f'l{level}_tower_depthwise_norm_{i}')
                         for i in range(len(self._depthwise_convs))]
            self._level_norms[str(level)] = (
                depthwise, [norm(f'l{level}_tower_norm_{i}')
                            for i in range(self._num_convs)])
        # No (depthwise, norm) pairs to fold: each depthwise serves all levels.
        return [], []

    def _tower_norms(self, level=None):
        if level is None:
            raise ValueError(f'{self.name}: the tower norms are per level; '
                             'pass level')
        return self._level_norms[str(level)]

    @property
    def has_pointwise_tail(self) -> bool:
        # Gathered slots come from different levels, each with its own norms.
        return False

    def call(self, features: Mapping[str, tf.Tensor], training=None):
        outputs = []
        for level in range(self._min_level, self._max_level + 1):
            x = self._spatial_tower(features[str(level)], training, level)
            x = self.pointwise_tail(x, training=training, level=level)
            _, h, w, c = x.shape
            outputs.append(tf.reshape(x, [-1, h * w, c]))
        return tf.concat(outputs, axis=1)

    def get_config(self):
        config = {k: v for k, v in super().get_config().items()
                  if k not in _SINGLE_LEVEL_ARGS}
        config.update(min_level=self._min_level, max_level=self._max_level)
        return config
